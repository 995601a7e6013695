"""The LUKS2 choices Shieldwright offers and writes, owned here once and importable without cryptography.

The recipe, the CLI's options and the wizard offer these values; the container writer and the KDFs use
them. Kept free of heavy imports so that ``shieldwright --help`` can name the choices cheaply.
"""

from __future__ import annotations

MiB = 1024 * 1024

#: The data cipher of every container we write, with a 512-bit key (AES-256 in XTS mode). Not a choice.
SEGMENT_CIPHER = "aes-xts-plain64"
VOLUME_KEY_BITS = 512
#: Encryption sector sizes a new container may use, the default first.
LUKS_SECTOR_SIZES = (4096, 512)
#: The KDFs a new keyslot can use, the default first.
KDF_KINDS = ("argon2id", "pbkdf2")
#: The hashes a pbkdf2 keyslot may use (cryptsetup's), the default first.
PBKDF2_HASHES = ("sha256", "sha384", "sha512", "sha1")
#: cryptsetup's default LUKS2 header space (2 x 16 KiB metadata + keyslots area): the data segment offset.
DEFAULT_DATA_OFFSET = 16 * MiB
