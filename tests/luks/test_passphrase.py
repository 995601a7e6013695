"""Generated provisioning passphrases (format, entropy, randomness) and the typed-passphrase rating."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from app.luks import passphrase
from app.luks.passphrase import MIN_LENGTH, Strength, assess, generate

MODHEX = "cbdefghijklnrtuv"  # systemd's src/shared/recovery-key.c, spelled out independently


def test_generated_format_and_entropy() -> None:
    text = generate()
    groups = text.split("-")
    assert len(groups) == 8 and all(len(g) == 4 for g in groups)
    assert set(text) <= set(MODHEX) | {"-"}
    assert passphrase.GENERATED_RE.fullmatch(text)
    # 32 characters from a 16-symbol alphabet: log2(16**32) = 128 bits.
    assert len(text.replace("-", "")) * math.log2(len(MODHEX)) == passphrase.ENTROPY_BITS == 128
    assert passphrase.entropy_bits() == 128
    assert assess(text).strength is Strength.STRONG


def test_generated_passphrases_differ_and_use_the_whole_alphabet() -> None:
    many = [generate() for _ in range(400)]
    assert len(set(many)) == len(many)
    counts = Counter("".join(many).replace("-", ""))
    assert set(counts) == set(MODHEX)
    # 12800 characters, 800 expected per symbol: a broken generator (e.g. only half the alphabet) fails this.
    assert min(counts.values()) > 600 and max(counts.values()) < 1000


def test_generate_parameters() -> None:
    assert len(generate(3, 2)) == 3 * 2 + 2
    assert passphrase.entropy_bits(10, 4) == 160
    with pytest.raises(ValueError):
        generate(0)


@pytest.mark.parametrize(
    ("text", "strength"),
    [
        ("", Strength.EMPTY),
        ("short", Strength.TOO_SHORT),
        ("x" * (MIN_LENGTH - 1), Strength.TOO_SHORT),
        ("aaaaaaaaaaaaaaaa", Strength.WEAK),  # long, but one character repeated
        ("abcdefghijkl", Strength.WEAK),  # 12 lower-case letters: 12 × log2(26) ≈ 56 bits at most
        ("correct horse battery staple", Strength.STRONG),
        ("Tr0ub4dor&3xyzQ", Strength.FAIR),  # 15 × log2(95) ≈ 98.5 bits
    ],
)
def test_assess(text: str, strength: Strength) -> None:
    result = assess(text)
    assert result.strength is strength
    assert result.acceptable == (strength not in (Strength.EMPTY, Strength.TOO_SHORT))


def test_assess_boundary_and_estimate() -> None:
    assert not assess("a1b2c3d4e5f").acceptable  # 11 characters
    assert assess("a1b2c3d4e5f6").acceptable  # 12
    assert assess("a1b2c3d4e5f6").estimated_bits == int(12 * math.log2(36))
    assert assess("abcdefghijklmnopq").strength is Strength.FAIR  # 17 × 4.7 ≈ 79 bits
