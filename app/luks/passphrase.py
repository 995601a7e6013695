"""Provisioning passphrases: generate strong ones, judge typed ones (no Qt, no I/O).

A generated passphrase is 32 random *modhex* characters (systemd's alphabet ``cbdefghijklnrtuv``, see
:data:`app.luks.container.MODHEX`) in 8 dash-separated groups of 4, e.g. ``fkrt-bcnu-...``. Each character
carries 4 bits, so the passphrase holds exactly **128 bits** of entropy from :mod:`secrets`. Modhex is what
systemd uses for recovery keys because those 16 letters sit on the same keys in every common keyboard layout
(QWERTY, QWERTZ, AZERTY, Dvorak aside): the passphrase types the same on a VM console whose keymap is wrong,
and reads aloud without ambiguity (no digits, no l/1 or O/0 pairs). The dashes are part of the passphrase.

Typed passphrases are judged with :func:`assess`: shorter than :data:`MIN_LENGTH` characters is refused; the
rest get a rough, optimistic entropy estimate (length × log2 of the character classes used), good enough to
warn about "password1234" but no substitute for a generator.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

from app.luks.container import MODHEX
from app.secrets import MIN_PASSPHRASE_LENGTH, passphrase_length

#: Generated passphrases: groups × characters per group, 4 bits per modhex character.
GROUPS = 8
GROUP_LENGTH = 4
BITS_PER_CHAR = 4
#: Entropy of a generated passphrase in bits (32 modhex characters).
ENTROPY_BITS = GROUPS * GROUP_LENGTH * BITS_PER_CHAR
#: Typed passphrases shorter than this are refused (the one rule of :mod:`app.secrets`; the CLI warns).
MIN_LENGTH = MIN_PASSPHRASE_LENGTH

#: What :func:`generate` returns, exactly.
GENERATED_RE = re.compile(rf"[{MODHEX}]{{{GROUP_LENGTH}}}(?:-[{MODHEX}]{{{GROUP_LENGTH}}}){{{GROUPS - 1}}}")

assert ENTROPY_BITS >= 128


def generate(groups: int = GROUPS, group_length: int = GROUP_LENGTH) -> str:
    """A fresh random modhex passphrase: ``groups`` groups of ``group_length`` characters joined by dashes.

    With the defaults it carries :data:`ENTROPY_BITS` (128) bits. The caller decides where it lives; the
    wizard keeps it in a ``bytearray`` it wipes when it closes.
    """
    if groups < 1 or group_length < 1:
        raise ValueError("groups and group_length must be positive")
    return "-".join("".join(secrets.choice(MODHEX) for _ in range(group_length)) for _ in range(groups))


def entropy_bits(groups: int = GROUPS, group_length: int = GROUP_LENGTH) -> int:
    """Bits of entropy of a :func:`generate` result with these parameters."""
    return groups * group_length * BITS_PER_CHAR


class Strength(StrEnum):
    """How a typed passphrase rates. Only ``TOO_SHORT`` is refused."""

    EMPTY = "empty"
    TOO_SHORT = "too_short"
    WEAK = "weak"
    FAIR = "fair"
    STRONG = "strong"


@dataclass(frozen=True)
class Assessment:
    strength: Strength
    #: Optimistic upper bound of the entropy in bits (a guessable phrase has far less).
    estimated_bits: int

    @property
    def acceptable(self) -> bool:
        return self.strength not in (Strength.EMPTY, Strength.TOO_SHORT)


#: Below these estimates a passphrase is rated weak / fair; at or above the second, strong.
WEAK_BELOW_BITS = 60
STRONG_FROM_BITS = 100


def _pool(text: str) -> int:
    pool = 0
    if any(c.islower() for c in text):
        pool += 26
    if any(c.isupper() for c in text):
        pool += 26
    if any(c.isdigit() for c in text):
        pool += 10
    if any(not c.isalnum() and c.isascii() for c in text):
        pool += 33
    if any(not c.isascii() for c in text):
        pool += 100
    return max(pool, 2)


def assess(text: str) -> Assessment:
    """Rate a typed passphrase: empty, too short (< :data:`MIN_LENGTH` characters), weak, fair or strong.

    The estimate is length × log2(pool of character classes used), counting a run of one repeated character
    as a single character. It never sees a dictionary, so it overrates phrases made of common words; it only
    exists to catch the obviously weak.
    """
    if not text:
        return Assessment(Strength.EMPTY, 0)
    effective = len(re.sub(r"(.)\1+", r"\1", text))  # "aaaaaaaaaaaa" is one character's worth
    bits = int(effective * math.log2(_pool(text)))
    if passphrase_length(text) < MIN_LENGTH:
        return Assessment(Strength.TOO_SHORT, bits)
    if bits < WEAK_BELOW_BITS:
        return Assessment(Strength.WEAK, bits)
    if bits < STRONG_FROM_BITS:
        return Assessment(Strength.FAIR, bits)
    return Assessment(Strength.STRONG, bits)
