"""The Signature catalog page's background work and how its outcomes read.

The functions here run in the app's executor and only call the catalog engine: create and sign
(:func:`app.catalog.create.create_catalog`), decode (:func:`app.catalog.format.read_catalog`), verify
(:func:`app.catalog.verify.verify_catalog`) and write (:func:`app.signing.output.write_output`).
:func:`describe_verification` turns a failed verification into the error panel's message and hint.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication

from app.catalog.create import create_catalog
from app.catalog.format import read_catalog
from app.catalog.verify import VerifyResult
from app.catalog.verify import verify_catalog as verify_image
from app.disk.image import open_image
from app.gui.state import CatalogPartitionSummary, CatalogSummary
from app.signing.output import write_output

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

    from app.progress import CancelToken, Progress
    from app.signing.signer import Signer

#: How many mismatches the error panel names before "and N more".
MISMATCHES_SHOWN = 3


@dataclass(frozen=True)
class ComputedCatalog:
    """A signed catalog (DER) and what the engine decoded from it."""

    signed: bytes
    summary: CatalogSummary


def summarize_catalog(der: bytes) -> CatalogSummary:
    """Decode ``der`` with the engine's reader (which checks the signature)."""
    signed = read_catalog(der)
    cat = signed.catalog
    return CatalogSummary(
        template_name=cat.template_name,
        template_version=cat.template_version,
        block_size=cat.block_size,
        partitions=tuple(
            CatalogPartitionSummary(p.number, p.size_bytes, p.block_count, p.digest) for p in cat.partitions
        ),
        signer_subject=signed.signer_subject,
        signing_time=signed.signing_time,
        size_bytes=len(der),
    )


def compute_catalog(
    image: str, numbers: list[int], *, name: str, version: str, signer: Signer, block_size: int,
    progress: Progress, cancel: CancelToken,
) -> ComputedCatalog:  # fmt: skip
    """Hash, sign, and decode the result for display."""
    der = create_catalog(
        image, numbers, name=name, version=version, signer=signer, block_size=block_size,
        progress=progress, cancel=cancel,
    )  # fmt: skip
    return ComputedCatalog(der, summarize_catalog(der))


def verify_catalog(
    image: str, signed: bytes, *, trusted: Sequence[Certificate] | None = None, progress: Progress,
    cancel: CancelToken,
) -> VerifyResult:  # fmt: skip
    """The engine's verification (signature, trust, header, every block)."""
    with open_image(image) as disk:
        return verify_image(disk, signed, trusted=trusted, progress=progress, cancel=cancel)


def write_catalog(path: str, data: bytes) -> Path:
    """Write the catalog; the file dialog already asked before replacing an existing file."""
    return write_output(path, data, overwrite=True)


def default_file_name(name: str, version: str) -> str:
    """``Web-server-1.0.0.0.vsc``: what the Save dialog proposes."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.") or "template"
    return f"{stem}-{version}.vsc"


def utc_text(moment: dt.datetime | None) -> str:
    if moment is None:
        return "?"
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _tr(text: str, n: int = -1) -> str:
    return QCoreApplication.translate("CatalogPage", text, "", n)


def describe_verification(result: VerifyResult) -> tuple[str, str]:
    """A failed verification as a message and a hint naming the first mismatching blocks."""
    problems, mismatches = list(result.problems), list(result.mismatches)
    count = max(result.mismatch_count, len(mismatches))
    lines = [
        _tr("partition %1 at byte offset %2 (block %3)")
        .replace("%1", str(m.partition_number))
        .replace("%2", f"{m.byte_offset:,}")
        .replace("%3", f"{m.block_index:,}")
        for m in mismatches[:MISMATCHES_SHOWN]
    ]
    more = count - min(len(mismatches), MISMATCHES_SHOWN)
    hint = "; ".join(lines)
    if more > 0:
        hint += "; " + _tr("and %n more block(s).", more)
    elif hint:
        hint += "."
    if mismatches:
        message = _tr("The image does not match the catalog: %n block(s) differ.", count)
        if problems:
            hint = "; ".join(str(p) for p in problems) + (" " + hint if hint else "")
    else:
        message = str(problems[0]) if problems else _tr("The catalog does not verify.")
        hint = "; ".join(str(p) for p in problems[1:])
    return message, hint
