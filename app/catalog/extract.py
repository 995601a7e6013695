"""Copy a template's catalog out of the image (Shieldwright's ``Save-VolumeSignatureCatalog``).

VM owners need the ``.vsc`` to bind shielding data to a template without handling the multi-GiB disk.
Microsoft keeps it in VHDX metadata, and so do we for VHDX outputs (a user metadata item,
:data:`app.disk.formats.vhdx.CATALOG_ITEM`); every template also has it as a file in its ESP
(``ESP_CATALOG_PATH``), which works for every image format and which firmware never reads. A VHDX's
metadata is read first. The extracted bytes are checked to be a well-formed, correctly signed catalog
before they are handed out (trust is the reader's decision).
"""

from __future__ import annotations

import os
from typing import Literal

from app.catalog.format import ESP_CATALOG_PATH, CatalogError, read_catalog
from app.disk.esp import EspFileMissingError, read_esp_file
from app.disk.formats.vhdx import CATALOG_DAMAGED_HINT, VhdxImage
from app.disk.image import DiskImage, open_image
from app.disk.layout import layout_of
from app.disk.model import Role
from app.errors import ShieldwrightError

#: Where :func:`extract_catalog` looks: the VHDX metadata, then the ESP ("auto"), or only one of them.
Source = Literal["auto", "vhdx", "esp"]
SOURCES: tuple[Source, ...] = ("auto", "vhdx", "esp")


def extract_catalog(image_path: str | os.PathLike[str], *, source: Source = "auto") -> bytes:
    """The ``.vsc`` bytes a template carries: from its VHDX metadata when it is a VHDX that has the item
    (``source`` "auto" or "vhdx"), else from its ESP. A missing or damaged catalog is a one-line error; a
    damaged VHDX item is reported, never silently replaced by the ESP's copy."""
    if source not in SOURCES:
        raise ValueError(f"unknown catalog source {source!r}")
    with open_image(image_path) as image:
        if source != "esp":
            data = vhdx_catalog(image)
            if data is not None:
                return data
            if source == "vhdx":
                where = (
                    "has no catalog in its VHDX metadata" if isinstance(image, VhdxImage) else "is no VHDX"
                )
                raise CatalogError(f"{image_path} {where}", "read the catalog from its ESP instead")
        data = esp_catalog(image, image_path)
    read_catalog(data)  # a damaged catalog is reported here, not by whoever receives the file
    return data


def vhdx_catalog(image: DiskImage) -> bytes | None:
    """The signed catalog in ``image``'s VHDX metadata, checked to be well-formed and correctly signed;
    None when ``image`` is not a VHDX or has no catalog item. Damage raises a one-line error that says the
    VHDX item is at fault (:class:`~app.errors.CorruptImageError` for its table entries, the catalog's own
    error type for its bytes)."""
    if not isinstance(image, VhdxImage):
        return None
    data = image.catalog_item()
    if data is None:
        return None
    try:
        read_catalog(data)
    except ShieldwrightError as exc:
        raise type(exc)(
            f"{image.path}: the catalog in the VHDX metadata is damaged: {exc.message}", CATALOG_DAMAGED_HINT
        ) from None
    return data


def esp_catalog(image: DiskImage, image_path: str | os.PathLike[str]) -> bytes:
    """The bytes of ``ESP_CATALOG_PATH`` in the image's one ESP (not checked here)."""
    layout = layout_of(image)
    esps = [p for p in layout.partitions if p.role is Role.ESP]
    if not esps:
        raise CatalogError(f"{image_path} has no EFI System Partition", "is this a Shieldwright template?")
    if len(esps) > 1:
        numbers = ", ".join(str(p.number) for p in esps)
        raise CatalogError(f"{image_path} has several EFI System Partitions ({numbers})", "keep only one")
    try:
        return read_esp_file(image, esps[0], layout.sector_size, ESP_CATALOG_PATH)
    except EspFileMissingError:
        raise CatalogError(
            f"{image_path} has no catalog: no {ESP_CATALOG_PATH} in its ESP (partition {esps[0].number})",
            "only built templates carry one; a catalog from 'vsc create' is a separate file",
        ) from None
