"""Types of the compiled AES-XTS-plain64 extension (app/luks/_xts.c)."""

from typing import final

_Buffer = bytes | bytearray | memoryview

@final
class _Context:
    """An OpenSSL AES-XTS context (a capsule at run time)."""

def context(key: _Buffer, encrypt: bool, /) -> _Context: ...
def crypt(
    ctx: _Context, src: _Buffer, dst: bytearray | memoryview, sector_size: int, first_iv: int, /
) -> None: ...
