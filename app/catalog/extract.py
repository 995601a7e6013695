"""Copy a template's catalog out of its ESP (Shieldwright's ``Save-VolumeSignatureCatalog``).

VM owners need the ``.vsc`` to bind shielding data to a template without handling the multi-GiB disk.
Microsoft keeps it in VHDX metadata; we keep it as a file in the ESP (``ESP_CATALOG_PATH``), which works
for every image format and which firmware never reads. The extracted bytes are checked to be a
well-formed, correctly signed catalog before they are handed out (trust is the reader's decision).
"""

from __future__ import annotations

import os

from app.catalog.format import ESP_CATALOG_PATH, CatalogError, read_catalog
from app.disk.esp import EspFileMissingError, read_esp_file
from app.disk.image import open_image
from app.disk.layout import layout_of
from app.disk.model import Role


def extract_catalog(image_path: str | os.PathLike[str]) -> bytes:
    """The ``.vsc`` bytes stored in the image's ESP; a missing or damaged catalog is a one-line error."""
    with open_image(image_path) as image:
        layout = layout_of(image)
        esps = [p for p in layout.partitions if p.role is Role.ESP]
        if not esps:
            raise CatalogError(
                f"{image_path} has no EFI System Partition", "is this a Shieldwright template?"
            )
        if len(esps) > 1:
            numbers = ", ".join(str(p.number) for p in esps)
            raise CatalogError(f"{image_path} has several EFI System Partitions ({numbers})", "keep only one")
        try:
            data = read_esp_file(image, esps[0], layout.sector_size, ESP_CATALOG_PATH)
        except EspFileMissingError:
            raise CatalogError(
                f"{image_path} has no catalog: no {ESP_CATALOG_PATH} in its ESP (partition {esps[0].number})",
                "only built templates carry one; a catalog from 'vsc create' is a separate file",
            ) from None
    read_catalog(data)  # a damaged catalog is reported here, not by whoever receives the file
    return data
