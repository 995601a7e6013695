"""Finding kernels and initrds inside images, checked against the files the image builders put there."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from app.boot.sources import BootFile, classify, list_boot_files, read_boot_file
from app.disk.image import open_image
from app.disk.layout import layout_of
from app.template.demo import ENTRY_TOKEN
from tests.boot.uki_helpers import initrd, kernel, kernel_files
from tests.conftest import qemu_convert, run, sgdisk_partitions


def _files(image: Path) -> tuple[list[BootFile], dict[str, bytes]]:
    with open_image(image) as img:
        layout = layout_of(img)
        found = list_boot_files(img, layout)
        return found, {f.path: read_boot_file(img, layout, f) for f in found}


def test_demo_xbootldr_kernel_and_initrd_are_found_and_read(demo_image: Path) -> None:
    found, contents = _files(demo_image)
    version = kernel_files().version
    base = f"/{ENTRY_TOKEN}/{version}"
    assert sorted(found, key=lambda f: f.path) == [
        BootFile(2, f"{base}/initrd", "initrd", len(initrd())),
        BootFile(2, f"{base}/linux", "kernel", len(kernel())),
    ]
    # The demo builder copied the .deb's vmlinuz and its own (reproducible) busybox initrd there.
    assert contents[f"{base}/linux"] == kernel()
    assert contents[f"{base}/initrd"] == initrd()


def test_a_qcow2_image_gives_the_same_files(demo_image: Path, tmp_path: Path) -> None:
    qcow = qemu_convert(demo_image, tmp_path / "demo.qcow2", "qcow2")
    assert _files(qcow) == _files(demo_image)


def test_root_partition_boot_directory_and_esp_ukis(small_disk: Path, tmp_path: Path) -> None:
    """A Debian-style /boot on the root partition (with its symlinks and extras), and a UKI in the ESP."""
    image = tmp_path / "disk.raw"
    run("cp", "--sparse=always", small_disk, image)
    image.chmod(0o644)
    parts = sgdisk_partitions(image)
    tree = tmp_path / "root"
    (tree / "boot" / "grub").mkdir(parents=True)
    (tree / "boot" / "vmlinuz-6.1.0-9-amd64").write_bytes(b"K" * 3000)
    (tree / "boot" / "initrd.img-6.1.0-9-amd64").write_bytes(b"I" * 2000)
    (tree / "boot" / "config-6.1.0-9-amd64").write_text("CONFIG_X=y\n")
    (tree / "boot" / "System.map-6.1.0-9-amd64").write_text("map\n")
    (tree / "boot" / "grub" / "grub.cfg").write_text("menuentry\n")
    (tree / "vmlinuz").symlink_to("boot/vmlinuz-6.1.0-9-amd64")
    (tree / "boot" / "vmlinuz").symlink_to("vmlinuz-6.1.0-9-amd64")
    root = parts[2]
    root_img = tmp_path / "root.img"
    size = (root["last_lba"] - root["first_lba"] + 1) * 512  # type: ignore[operator]
    with open(root_img, "wb") as f:
        f.truncate(size)
    run("mkfs.ext4", "-q", "-F", "-d", tree, root_img)
    run(
        "dd",
        f"if={root_img}",
        f"of={image}",
        "bs=512",
        f"seek={root['first_lba']}",
        "conv=notrunc",
        "status=none",
    )
    esp_offset = parts[0]["first_lba"] * 512  # type: ignore[operator]
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull}
    uki = tmp_path / "u.efi"
    uki.write_bytes(b"MZ-uki" * 100)
    drive = f"{image}@@{esp_offset}"
    subprocess.run(["mmd", "-i", drive, "::/EFI", "::/EFI/Linux"], check=True, env=env)
    subprocess.run(["mcopy", "-i", drive, str(uki), "::/EFI/Linux/os.efi"], check=True, env=env)
    subprocess.run(["mcopy", "-i", drive, str(uki), "::/EFI/BOOTX64.EFI"], check=True, env=env)

    found, contents = _files(image)
    assert sorted((f.partition_number, f.path, f.kind, f.size) for f in found) == [
        (1, "/EFI/Linux/os.efi", "uki", 600),
        (3, "/boot/initrd.img-6.1.0-9-amd64", "initrd", 2000),
        (3, "/boot/vmlinuz-6.1.0-9-amd64", "kernel", 3000),
    ]
    assert contents["/boot/vmlinuz-6.1.0-9-amd64"] == b"K" * 3000
    assert contents["/EFI/Linux/os.efi"] == uki.read_bytes()


@pytest.mark.parametrize(
    "path, kind",
    [
        ("/boot/vmlinuz-6.1.0-9-amd64", "kernel"),
        ("/x/6.1/linux", "kernel"),
        ("/boot/initrd.img-6.1.0-9-amd64", "initrd"),
        ("/x/6.1/initrd", "initrd"),
        ("/boot/initramfs-6.1.img", "initrd"),
        ("/EFI/Linux/debian-6.1.efi", "uki"),
        ("/EFI/BOOT/BOOTX64.EFI", None),
        ("/boot/config-6.1", None),
        ("/boot/System.map-6.1", None),
        ("/loader/entries/a.conf", None),
    ],
)
def test_classify(path: str, kind: str | None) -> None:
    assert classify(path) == kind
