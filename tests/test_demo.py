"""The demo base image, graded by the real tools: sgdisk, fsck.fat, mtools, e2fsck, debugfs, cpio, QEMU."""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from platformdirs import user_cache_path

from app.errors import CancelledError, ShieldwrightError, ToolMissingError
from app.progress import CancelToken
from app.signing.authenticode import list_signatures
from app.template import demo
from tests.conftest import require_tool, run, sgdisk_partitions

MiB = 1024 * 1024
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def _extract(image: Path, part: dict[str, object], dest: Path) -> Path:
    """One partition's bytes, cut out with dd at the LBAs sgdisk reports."""
    first, last = int(part["first_lba"]), int(part["last_lba"])  # type: ignore[call-overload]
    run("dd", f"if={image}", f"of={dest}", "bs=512", f"skip={first}", f"count={last - first + 1}",
        "conv=sparse", "status=none")  # fmt: skip
    return dest


@pytest.fixture(scope="module")
def parts(demo_image: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three partitions of the demo image as separate files, keyed by GPT name."""
    d = tmp_path_factory.mktemp("demo-parts")
    table = sgdisk_partitions(demo_image)
    return {str(p["name"]): _extract(demo_image, p, d / f"{p['name']}.img") for p in table}


def _debugfs(fs: Path, request: str) -> str:
    require_tool("debugfs")
    return run("debugfs", "-R", request, fs).stdout


@pytest.fixture(scope="module")
def boot_files(parts: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Kernel, initrd and loader entry dumped out of XBOOTLDR with debugfs."""
    d = tmp_path_factory.mktemp("demo-boot")
    entry = _debugfs(parts["XBOOTLDR"], f"cat /loader/entries/{demo.ENTRY_TOKEN}.conf")
    fields = dict(line.split(None, 1) for line in entry.splitlines() if line.strip())
    out = {"entry": d / "entry.conf"}
    out["entry"].write_text(entry)
    for key in ("linux", "initrd"):
        out[key] = d / key
        _debugfs(parts["XBOOTLDR"], f"dump {fields[key].strip()} {out[key]}")
    return out


def test_size_and_sparseness(demo_image: Path) -> None:
    st = demo_image.stat()
    assert st.st_size <= 1024 * MiB
    assert st.st_size == demo.DISK_SIZE
    assert st.st_blocks * 512 < 64 * MiB  # holes stay holes: the image costs only its data


def test_gpt_is_clean_and_discoverable(demo_image: Path) -> None:
    require_tool("sgdisk")
    assert "No problems found" in run("sgdisk", "-v", demo_image).stdout
    parts = sgdisk_partitions(demo_image)
    assert [(p["name"], p["type_guid"]) for p in parts] == [
        ("ESP", "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
        ("XBOOTLDR", "bc13c2ff-59e6-4262-a352-b275fd6f7172"),
        ("root-x86-64", "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
    ]
    assert all(int(p["first_lba"]) % 2048 == 0 for p in parts)  # type: ignore[call-overload]
    assert len({p["partition_guid"] for p in parts}) == 3


def test_esp_is_clean_fat_with_systemd_boot(parts: dict[str, Path], tmp_path: Path) -> None:
    require_tool("fsck.fat")
    require_tool("mdir")
    esp = parts["ESP"]
    run("fsck.fat", "-n", esp)
    listing = subprocess.run(["mdir", "-i", esp, "-b", "-/", "::/"], capture_output=True, text=True,
                             env=MTOOLS_ENV, check=True).stdout  # fmt: skip
    assert "::/EFI/BOOT/BOOTX64.EFI" in listing
    assert "::/loader/loader.conf" in listing
    expected = demo.SYSTEMD_BOOT_EFI.read_bytes()
    for name in ("EFI/BOOT/BOOTX64.EFI", "EFI/systemd/systemd-bootx64.efi"):
        out = tmp_path / Path(name).name
        subprocess.run(["mcopy", "-i", esp, f"::/{name}", out], env=MTOOLS_ENV, check=True)
        assert out.read_bytes() == expected
    conf = tmp_path / "loader.conf"
    subprocess.run(["mcopy", "-i", esp, "::/loader/loader.conf", conf], env=MTOOLS_ENV, check=True)
    assert f"default {demo.ENTRY_TOKEN}.conf" in conf.read_text()


@pytest.mark.parametrize("name", ["XBOOTLDR", "root-x86-64"])
def test_ext4_partitions_are_clean(parts: dict[str, Path], name: str) -> None:
    require_tool("e2fsck")
    run("e2fsck", "-fn", parts[name])
    assert "Filesystem OS type:       Linux" in run("dumpe2fs", "-h", parts[name]).stdout


def test_xbootldr_holds_kernel_initrd_and_entry(parts: dict[str, Path], boot_files: dict[str, Path]) -> None:
    listing = _debugfs(parts["XBOOTLDR"], "ls -l /loader/entries")
    assert f"{demo.ENTRY_TOKEN}.conf" in listing
    entry = boot_files["entry"].read_text()
    assert entry.startswith("title ")
    assert "options" in entry and "console=ttyS0" in entry
    (version_dir,) = [
        line.split()[-1]
        for line in _debugfs(parts["XBOOTLDR"], f"ls -l /{demo.ENTRY_TOKEN}").splitlines()
        if line.split() and line.split()[-1] not in (".", "..")
    ]
    assert f"version    {version_dir}" in entry
    files = _debugfs(parts["XBOOTLDR"], f"ls -l /{demo.ENTRY_TOKEN}/{version_dir}")
    assert " linux" in files and " initrd" in files


def test_kernel_is_an_x86_boot_image(boot_files: dict[str, Path]) -> None:
    kernel = boot_files["linux"].read_bytes()
    assert kernel[:2] == b"MZ"  # EFI stub PE image
    assert kernel[0x202:0x206] == b"HdrS"  # x86 Linux boot protocol header
    pe = int.from_bytes(kernel[0x3C:0x40], "little")
    assert kernel[pe : pe + 4] == b"PE\0\0"


def test_initrd_is_gzip_newc_with_busybox_and_init(boot_files: dict[str, Path], tmp_path: Path) -> None:
    require_tool("cpio")
    raw = gzip.decompress(boot_files["initrd"].read_bytes())
    assert raw.startswith(b"070701")
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=raw, capture_output=True, check=True).stdout
    names = set(listing.decode().split())
    assert {"init", "bin/busybox", "bin/sh", "dev/console", "lib/modules/load-order"} <= names
    assert any(n.endswith("/virtio_blk.ko") for n in names)
    run_dir = tmp_path / "x"
    run_dir.mkdir()
    wanted = ["init", "bin/busybox", "lib/modules/load-order"]
    subprocess.run(
        ["cpio", "-i", "-d", "--quiet", *wanted], input=raw, cwd=run_dir, check=True, capture_output=True
    )
    init = (run_dir / "init").read_text()
    assert init.startswith("#!/bin/sh")
    assert demo.INITRD_MARKER in init and "shieldwright.test" in init and "poweroff -f" in init
    assert (run_dir / "bin" / "busybox").read_bytes() == demo.BUSYBOX.read_bytes()
    order = (run_dir / "lib/modules/load-order").read_text().split()
    assert order[-1].endswith("virtio_blk.ko")
    # The script must at least parse: `sh -n` with the busybox it will run under.
    subprocess.run([run_dir / "bin" / "busybox", "sh", "-n", run_dir / "init"], check=True)


def test_root_has_busybox_and_os_release(parts: dict[str, Path]) -> None:
    root = parts["root-x86-64"]
    listing = _debugfs(root, "ls -l /bin")
    assert " busybox" in listing and " sh" in listing
    stat = _debugfs(root, "stat /bin/busybox")
    assert "User:     0   Group:     0" in stat  # root-owned although built by any user
    os_release = _debugfs(root, "cat /etc/os-release")
    fields = dict(line.split("=", 1) for line in os_release.splitlines() if "=" in line)
    assert fields["ID"] == "shieldwright-demo"
    assert {"NAME", "VERSION_ID", "PRETTY_NAME"} <= fields.keys()
    assert _debugfs(root, "cat /etc/hostname").strip() == "shieldwright-demo"
    assert _debugfs(root, "cat /sbin/init").startswith("#!/bin/sh")
    assert "character special" in _debugfs(root, "stat /dev/console")


@pytest.mark.slow
@pytest.mark.vm
def test_boots_in_qemu_to_initrd_and_root(
    demo_image: Path, boot_files: dict[str, Path], tmp_path: Path
) -> None:
    """Direct kernel boot (TCG, no firmware): the initrd finds the DPS root, switches to it, powers off."""
    qemu = require_tool("qemu-system-x86_64")
    disk = tmp_path / "disk.img"
    run("cp", "--sparse=always", demo_image, disk)  # the fixture is read-only; QEMU wants to write
    proc = subprocess.run(
        [qemu, "-accel", "tcg", "-cpu", "max", "-m", "512", "-nographic", "-no-reboot", "-nodefaults",
         "-serial", "stdio", "-kernel", boot_files["linux"], "-initrd", boot_files["initrd"],
         "-append", "console=ttyS0 panic=-1 shieldwright.test=root",
         "-drive", f"file={disk},format=raw,if=virtio"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    out = proc.stdout
    assert demo.INITRD_MARKER in out, out[-2000:]
    assert "switching to root /dev/vda3" in out, out[-2000:]
    assert demo.ROOT_MARKER in out, out[-2000:]
    assert "reboot: Power down" in out


def test_cancelled_before_start_leaves_nothing(tmp_path: Path) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        demo.build_demo_image(tmp_path / "demo.img", cancel=token, cache_dir=tmp_path / "cache")
    assert list(tmp_path.iterdir()) == []


class _CancelAt:
    """A Progress that presses Cancel when a given step begins."""

    def __init__(self, step: str, token: CancelToken) -> None:
        self.step, self.token, self.steps = step, token, []

    def begin(self, step: str, total: int) -> None:
        self.steps.append(step)
        if step == self.step:
            self.token.cancel()

    def update(self, done: int) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass


@pytest.mark.slow
def test_cancelled_mid_build_leaves_no_files(demo_image: Path, tmp_path: Path) -> None:
    """Cancel while partitions are copied (kernel cached by the session fixture): no image, no temp files."""
    step = "Writing partitions"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    token = CancelToken()
    progress = _CancelAt(step, token)
    with pytest.raises(CancelledError):
        demo.build_demo_image(out_dir / "demo.img", progress=progress, cancel=token)
    assert step in progress.steps
    assert list(out_dir.iterdir()) == []


def test_no_apt_lists_and_no_cache_says_apt_get_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "_apt_fields", lambda package, cancel: None)
    with pytest.raises(ToolMissingError) as info:
        demo.fetch_kernel_deb(tmp_path)
    assert "sudo apt-get update" in info.value.hint


def test_without_apt_lists_a_cached_kernel_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, or apt lists cleaned: the demo still builds from the last downloaded kernel."""
    monkeypatch.setattr(demo, "_apt_fields", lambda package, cancel: None)
    cached = tmp_path / "linux-image-6.1.0-99-cloud-amd64_6.1.999-1_amd64.deb"
    cached.write_bytes(b"!<arch>\n")
    assert demo.fetch_kernel_deb(tmp_path) == cached


# --- boot_loader="shim": Debian's signed shim and fallback on the ESP ---------------------------------


@pytest.fixture(scope="module")
def shim_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shim demo image and its ESP cut out (shim packages cached under ~/.cache like the kernel)."""
    d = tmp_path_factory.mktemp("demo-shim")
    image = demo.build_demo_image(d / "demo-shim.img", boot_loader="shim")
    esp = next(p for p in sgdisk_partitions(image) if p["name"] == "ESP")
    return image, _extract(image, esp, d / "esp.img")


@pytest.mark.slow
def test_shim_esp_is_laid_out_as_debian_installs_shim_for_removable_boot(
    shim_demo: tuple[Path, Path], tmp_path: Path
) -> None:
    require_tool("fsck.fat")
    require_tool("dpkg-deb")
    _, esp = shim_demo
    run("fsck.fat", "-n", esp)
    debs = demo.fetch_shim_debs(user_cache_path("shieldwright") / "debs")
    unpacked = tmp_path / "debs"
    for deb in debs.values():  # the packages as dpkg-deb unpacks them, not as our code does
        run("dpkg-deb", "-x", deb, unpacked)
    expected = {
        "EFI/BOOT/BOOTX64.EFI": "shimx64.efi.signed",
        "EFI/BOOT/fbx64.efi": "fbx64.efi.signed",
        "EFI/debian/shimx64.efi": "shimx64.efi.signed",
        "EFI/debian/mmx64.efi": "mmx64.efi.signed",
    }
    for name, source in expected.items():
        out = tmp_path / name.replace("/", "_")
        subprocess.run(["mcopy", "-i", esp, f"::/{name}", out], env=MTOOLS_ENV, check=True)
        assert out.read_bytes() == (unpacked / "usr/lib/shim" / source).read_bytes(), name
    # No CSV yet (a template build writes it, naming its UKI), and systemd-boot stays at its own path.
    listing = subprocess.run(["mdir", "-i", esp, "-b", "-/", "::/"], capture_output=True, text=True,
                             env=MTOOLS_ENV, check=True).stdout  # fmt: skip
    assert "BOOTX64.CSV" not in listing.upper()
    assert "::/EFI/systemd/systemd-bootx64.efi" in listing


@pytest.mark.slow
def test_the_shim_is_microsoft_signed_and_its_helpers_debian_signed(shim_demo: tuple[Path, Path]) -> None:
    """What a cloud VM's db (Microsoft's UEFI CA) admits: shim, which carries Debian's key for the rest."""
    _, esp = shim_demo
    out = esp.with_name("shim.efi")
    subprocess.run(["mcopy", "-i", esp, "-o", "::/EFI/BOOT/BOOTX64.EFI", out], env=MTOOLS_ENV, check=True)
    text = run("sbverify", "--list", out).stdout
    assert "Microsoft Corporation UEFI CA" in text, text
    assert list_signatures(out.read_bytes())
    fb = esp.with_name("fb.efi")
    subprocess.run(["mcopy", "-i", esp, "-o", "::/EFI/BOOT/fbx64.efi", fb], env=MTOOLS_ENV, check=True)
    assert "Debian" in run("sbverify", "--list", fb).stdout


def test_unknown_boot_loader_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ShieldwrightError, match="unknown boot loader 'grub'") as info:
        demo.build_demo_image(tmp_path / "x.img", boot_loader="grub", cache_dir=tmp_path / "cache")
    assert "shim" in info.value.hint
    assert list(tmp_path.iterdir()) == []


def test_shim_debs_are_cached_by_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached .deb with apt's SHA-256 is reused; a new version is downloaded and replaces the old one."""
    versions = {"shim-signed": "1.0", "shim-helpers-amd64-signed": "2.0"}
    downloads: list[str] = []

    def fields(package: str, cancel: CancelToken) -> dict[str, str]:
        v = versions[package]
        body = f"{package} {v}".encode()
        return {"Version": v, "Filename": f"pool/{package}_{v}_amd64.deb",
                "SHA256": hashlib.sha256(body).hexdigest()}  # fmt: skip

    def download(spec: str, target: Path, cancel: CancelToken) -> None:
        downloads.append(spec)
        package, version = spec.split("=")
        target.write_bytes(f"{package} {version}".encode())

    monkeypatch.setattr(demo, "_apt_fields", fields)
    monkeypatch.setattr(demo, "_apt_download", download)
    first = demo.fetch_shim_debs(tmp_path)
    assert {p.name for p in first.values()} == {
        "shim-signed_1.0_amd64.deb",
        "shim-helpers-amd64-signed_2.0_amd64.deb",
    }
    assert downloads == ["shim-signed=1.0", "shim-helpers-amd64-signed=2.0"]
    assert demo.fetch_shim_debs(tmp_path) == first and len(downloads) == 2  # cached: no new download
    versions["shim-signed"] = "1.1"
    again = demo.fetch_shim_debs(tmp_path)
    assert again["shim-signed"].name == "shim-signed_1.1_amd64.deb" and downloads[-1] == "shim-signed=1.1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "shim-helpers-amd64-signed_2.0_amd64.deb",
        "shim-signed_1.1_amd64.deb",
    ]


def test_without_apt_lists_cached_shim_debs_are_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "_apt_fields", lambda package, cancel: None)
    with pytest.raises(ToolMissingError, match="shim-signed"):
        demo.fetch_shim_debs(tmp_path)
    for name in (
        "shim-signed_1_amd64.deb",
        "shim-signed-common_1_all.deb",
        "shim-helpers-amd64-signed_1_amd64.deb",
    ):
        (tmp_path / name).write_bytes(b"!<arch>\n")
    got = demo.fetch_shim_debs(tmp_path)
    assert got["shim-signed"].name == "shim-signed_1_amd64.deb"  # not shim-signed-common
    assert got["shim-helpers-amd64-signed"].name == "shim-helpers-amd64-signed_1_amd64.deb"


def test_demo_image_command_offers_the_shim_boot_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``shieldwright demo-image --boot-loader shim`` reaches build_demo_image; other loaders are refused."""
    from app.__main__ import main

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(demo, "build_demo_image", lambda path, **kw: calls.append({"path": path, **kw}))
    assert main(["demo-image", "--boot-loader", "shim", str(tmp_path / "d.img")]) == 0
    assert calls[0]["boot_loader"] == "shim" and calls[0]["path"] == tmp_path / "d.img"
    assert main(["demo-image", str(tmp_path / "e.img")]) == 0
    assert calls[1]["boot_loader"] == "systemd-boot"
    with pytest.raises(SystemExit) as info:
        main(["demo-image", "--boot-loader", "grub", str(tmp_path / "f.img")])
    assert info.value.code == 2
