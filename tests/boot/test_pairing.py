"""Kernel/initrd pairing by version (app.boot.pairing)."""

from __future__ import annotations

from dataclasses import dataclass

from app.boot.pairing import initrd_version, is_microcode, kernel_version, pair_kernels


@dataclass(frozen=True)
class F:
    partition_number: int
    path: str
    kind: str


def test_versions_from_names_and_bls_directories():
    assert kernel_version("/boot/vmlinuz-6.1.0-28-cloud-amd64") == "6.1.0-28-cloud-amd64"
    assert kernel_version("/shieldwright-demo/6.12.9+bpo-cloud-amd64/linux") == "6.12.9+bpo-cloud-amd64"
    assert kernel_version("/boot/vmlinuz") is None
    assert initrd_version("/boot/initrd.img-6.1.0-28-cloud-amd64") == "6.1.0-28-cloud-amd64"
    assert initrd_version("/boot/initramfs-6.8.9-300.fc40.x86_64.img") == "6.8.9-300.fc40.x86_64"
    assert initrd_version("/boot/initrd-6.4.0-150600.23.7-default") == "6.4.0-150600.23.7-default"
    assert initrd_version("/shieldwright-demo/6.12.9/initrd") == "6.12.9"
    assert initrd_version("/boot/initrd.img") is None
    assert is_microcode("/boot/intel-ucode.img") and is_microcode("/amd-ucode.img")
    assert not is_microcode("/boot/initrd.img-6.1")


def test_pairs_each_kernel_with_its_version_only():
    files = [
        F(2, "/boot/vmlinuz-6.1.0-27-amd64", "kernel"),
        F(2, "/boot/vmlinuz-6.1.0-28-amd64", "kernel"),
        F(2, "/boot/initrd.img-6.1.0-28-amd64", "initrd"),
        F(2, "/boot/initrd.img-6.1.0-27-amd64", "initrd"),
        F(2, "/boot/intel-ucode.img", "initrd"),
        F(3, "/boot/initrd.img-6.1.0-28-amd64", "initrd"),  # another partition: not ours
        F(1, "/EFI/Linux/debian.efi", "uki"),
    ]
    entries = pair_kernels(files)
    assert [e.kernel.path for e in entries] == [
        "/boot/vmlinuz-6.1.0-27-amd64",
        "/boot/vmlinuz-6.1.0-28-amd64",
    ]
    assert [e.version for e in entries] == ["6.1.0-27-amd64", "6.1.0-28-amd64"]
    assert [i.path for i in entries[0].initrds] == [
        "/boot/intel-ucode.img",
        "/boot/initrd.img-6.1.0-27-amd64",
    ]
    assert [(i.partition_number, i.path) for i in entries[1].initrds] == [
        (2, "/boot/intel-ucode.img"),
        (2, "/boot/initrd.img-6.1.0-28-amd64"),
    ]


def test_bls_layout_and_unversioned_initrd_in_the_same_directory():
    files = [
        F(2, "/demo/6.12.9-cloud-amd64/linux", "kernel"),
        F(2, "/demo/6.12.9-cloud-amd64/initrd", "initrd"),
        F(2, "/demo/6.1.0-cloud-amd64/initrd", "initrd"),
        F(4, "/boot/vmlinuz", "kernel"),
        F(4, "/boot/initrd.img", "initrd"),
    ]
    entries = pair_kernels(files)
    assert [(e.version, [i.path for i in e.initrds]) for e in entries] == [
        ("6.12.9-cloud-amd64", ["/demo/6.12.9-cloud-amd64/initrd"]),
        (None, ["/boot/initrd.img"]),
    ]
