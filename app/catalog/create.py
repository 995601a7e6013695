"""Catalogue partitions of an existing image: hash them as they stand, then sign.

This is the "catalog-only template" path (like the Linux Shielded VM flow): a partition that is already
LUKS-encrypted is hashed as its ciphertext, exactly as the provisioning host will read it. The build
pipeline uses the streaming sink in :mod:`app.catalog.hasher` instead, so it never reads its output twice.

Everything is checked before the first block is hashed - name, version, block size, partition numbers -
so a typo costs milliseconds, not a full pass over a large disk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from app.catalog.format import (
    Catalog,
    CatalogError,
    check_block_size,
    check_template_name,
    parse_version,
    sign_catalog,
    utc_now,
)
from app.catalog.hasher import BlockHasher, find_partition
from app.catalog.limits import DEFAULT_BLOCK_SIZE
from app.disk.image import open_image
from app.disk.layout import layout_of
from app.disk.model import DiskLayout, Role
from app.progress import CancelToken, Progress
from app.signing.signer import Signer


def check_partitions(layout: DiskLayout, numbers: Sequence[int]) -> list[int]:
    """The requested GPT numbers, validated: the disk has a GPT, each exists once, none is the ESP.

    The ESP is refused because the template's catalog is stored in it (``ESP_CATALOG_PATH``): writing the
    catalog would change the very blocks it vouches for.
    """
    if layout.disk_guid is None:
        raise CatalogError("the image has no GPT partition table", "a template disk needs a GPT")
    if not numbers:
        raise CatalogError("no partition to catalogue", "give at least one --partition")
    dupes = sorted({n for n in numbers if list(numbers).count(n) > 1})
    if dupes:
        raise CatalogError(f"partition {dupes[0]} is given twice", "list each partition once")
    for n in numbers:
        part = find_partition(layout, n)
        if part.role is Role.ESP:
            raise CatalogError(
                f"partition {n} is the EFI System Partition, which cannot be protected by the catalog",
                "the catalog is stored in the ESP; catalogue the boot and root partitions",
            )
        if (part.last_lba + 1) * layout.sector_size > layout.virtual_size:
            raise CatalogError(f"partition {n} extends past the end of the disk", "the image is truncated")
    return list(numbers)


def create_catalog(
    image_path: str | os.PathLike[str],
    numbers: Sequence[int],
    *,
    name: str,
    version: str,
    signer: Signer,
    block_size: int = DEFAULT_BLOCK_SIZE,
    jobs: int | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> bytes:
    """A signed ``.vsc`` (DER) over partitions ``numbers`` of the image at ``image_path``.

    Returns bytes and writes nothing, so a cancel (``CancelledError``) or error can never leave a file.
    """
    check_template_name(name)
    parse_version(version)
    check_block_size(block_size)
    with open_image(image_path) as image:
        layout = layout_of(image)
        check_partitions(layout, numbers)
        with BlockHasher(jobs) as hasher:
            parts = hasher.hash_partitions(
                image, layout, numbers, block_size, progress=progress, cancel=cancel
            )
    assert layout.disk_guid is not None
    cat = Catalog(
        template_name=name,
        template_version=version,
        created=utc_now(),
        disk_guid=layout.disk_guid,
        block_size=block_size,
        partitions=parts,
    )
    return sign_catalog(cat, signer)
