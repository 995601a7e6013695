"""Turn the finished raw template into the recipe's output format: raw, dynamic VHDX, fixed VHD or qcow2.

raw is the staged file itself (renamed at the commit); VHDX and VHD are written by
:func:`app.disk.writers.write_image`, skipping holes; qcow2 by ``qemu-img convert``: the engine reads
qcow2 but does not write it, and qemu-img is the format's reference implementation. Every output goes
into the build's staging directory, so a failure or a cancel leaves nothing behind.

Export runs after the catalog is signed, so a VHDX carries the catalog in its metadata from the start
(user item :data:`app.disk.formats.vhdx.CATALOG_ITEM`, as Microsoft's templates carry theirs): nothing is
patched afterwards.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import threading
import uuid
from pathlib import Path

from app.disk.formats import vhdx
from app.disk.image import open_image
from app.disk.writers import write_image
from app.errors import CancelledError, ShieldwrightError
from app.progress import CancelToken, NullProgress, Progress
from app.template.recipe import OUTPUT_FORMATS
from app.tools import require_tool

#: File name suffixes the CLI maps to one of the recipe's OUTPUT_FORMATS when ``--format`` is not given.
SUFFIXES = {".raw": "raw", ".img": "raw", ".vhdx": "vhdx", ".vhd": "vhd", ".qcow2": "qcow2"}
_PERCENT = re.compile(rb"\((\d+(?:\.\d+)?)/100%\)")


def check_format(fmt: str) -> str:
    if fmt not in OUTPUT_FORMATS:
        raise ShieldwrightError(f"unknown output format {fmt!r}", f"use one of {', '.join(OUTPUT_FORMATS)}")
    if fmt == "qcow2":
        require_tool("qemu-img")  # before the long streaming pass, not after it
    return fmt


def export(raw: Path, dst: Path, fmt: str, *, progress: Progress | None = None,
           cancel: CancelToken | None = None, catalog: bytes | None = None) -> Path:  # fmt: skip
    """``dst`` in format ``fmt`` with the contents of the raw image ``raw``; returns the file that holds the
    output (``raw`` itself for the raw format). A VHDX also carries ``catalog`` (the signed ``.vsc``) in its
    metadata when it is given and fits (:func:`vhdx_catalog_note` says which); other formats ignore it."""
    progress = progress or NullProgress()
    cancel = cancel or CancelToken()
    check_format(fmt)
    if fmt == "raw":
        return raw
    if fmt in ("vhdx", "vhd"):
        items = vhdx.catalog_items(catalog) if fmt == "vhdx" and catalog and _fits(catalog) else []
        with open_image(raw) as image:
            write_image(image, dst, fmt, progress=progress, cancel=cancel, vhdx_user_items=items)
        return dst
    _qemu_img_convert(raw, dst, progress, cancel)
    return dst


def _fits(catalog: bytes) -> bool:
    return len(catalog) <= vhdx.MAX_CATALOG_BYTES


def vhdx_catalog_note(catalog: bytes) -> tuple[str, bool]:
    """The build log's line about the catalog in a VHDX output, and whether it belongs in the manifest's
    notes (only when the catalog was too large to be stored there)."""
    guid = uuid.UUID(bytes_le=vhdx.CATALOG_ITEM)
    if _fits(catalog):
        parts = -(-len(catalog) // vhdx.MAX_ITEM_LENGTH)
        return f"Catalog stored in the VHDX metadata too (user item {guid}, {parts} part(s))", False
    return (
        f"the catalog ({len(catalog)} bytes) is larger than the {vhdx.MAX_CATALOG_BYTES // 2**20} MiB a "
        "VHDX's metadata carries here: it is in the ESP and beside the image only (a larger catalog "
        "block size makes it smaller)",
        True,
    )


def _qemu_img_convert(raw: Path, dst: Path, progress: Progress, cancel: CancelToken) -> None:
    argv = [require_tool("qemu-img"), "convert", "-p", "-f", "raw", "-O", "qcow2", str(raw), str(dst)]
    progress.begin("Converting to qcow2 (qemu-img)", 10000)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "LC_ALL": "C"})  # fmt: skip
    err = bytearray()
    reader = threading.Thread(
        target=lambda: err.extend(proc.stderr.read() if proc.stderr else b""), daemon=True
    )
    reader.start()
    assert proc.stdout is not None
    buf = b""
    try:
        fd = proc.stdout.fileno()
        while True:
            if cancel.cancelled:
                proc.kill()
                raise CancelledError()
            chunk = _read_ready(fd)
            if chunk is None:
                continue
            if not chunk:
                break
            buf = (buf + chunk)[-256:]
            found = _PERCENT.findall(buf)
            if found:
                progress.update(int(float(found[-1]) * 100))
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
    if proc.returncode != 0:
        lines = [ln.strip() for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise ShieldwrightError(f"qemu-img failed: {last}", "check free space in the output folder")
    progress.update(10000)


def _read_ready(fd: int) -> bytes | None:
    """Up to 4 KiB from ``fd`` if it becomes readable within 0.1 s (b"" at EOF), else None."""
    ready, _, _ = select.select([fd], [], [], 0.1)
    return os.read(fd, 4096) if ready else None
