"""The catalog's limits that choices are made against, importable without the CMS machinery of
:mod:`app.catalog.format` (the recipe and the CLI's options name them cheaply)."""

from __future__ import annotations

KiB = 1024
MiB = 1024 * KiB

#: Hash block sizes: powers of two from 4 KiB (damage localised finely) to 64 MiB (hashing fast).
MIN_BLOCK_SIZE = 4 * KiB
MAX_BLOCK_SIZE = 64 * MiB
BLOCK_SIZES = tuple(1 << n for n in range(MIN_BLOCK_SIZE.bit_length() - 1, MAX_BLOCK_SIZE.bit_length()))
DEFAULT_BLOCK_SIZE = 1 * MiB
#: Longest template name we accept (Microsoft's wizard shows it in a single line too).
MAX_NAME_LENGTH = 256
