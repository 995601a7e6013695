"""Types of app/catalog/_maphash.c (compiled by setup.py; optional)."""

def hash_mapped(
    fd: int, offset: int, length: int, block_size: int, out: bytearray | memoryview, /
) -> None: ...
