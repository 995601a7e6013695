"""The build's small parts, fast: progress bookkeeping, threaded catalog hashing, the staged commit, the
kernel choice, and the report's escaping. (The whole build is in test_pipeline.py.)"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from app.catalog.hasher import PartitionSinks
from app.errors import OutOfSpaceError, OutputExistsError, ShieldwrightError
from app.progress import ProgressState
from app.template.build.boot import BootSourceError, newest_kernel, version_key
from app.template.build.progress import LOG_LIMIT, BuildProgress
from app.template.build.report import render_report
from app.template.build.sinks import AsyncSinks
from app.template.build.staging import FileHasher, Staging, os_error


def test_progress_counts_steps_and_keeps_a_bounded_log() -> None:
    forward = ProgressState()
    p = BuildProgress(forward=forward)
    assert p.snapshot().step_index == 0
    p.start_step(3, "Predict PCR values", 9)
    p.begin("Encrypting", 1000)
    p.update(250)
    s = p.snapshot()
    assert (s.step_index, s.step_count, s.step_name, s.detail, s.done, s.total) == (
        3, 9, "Predict PCR values", "Encrypting", 250, 1000,
    )  # fmt: skip
    assert s.fraction == 0.25 and forward.done == 250 and forward.step == "Encrypting"
    lines, seen = p.lines_since(0)
    assert lines == ["Step 3/9: Predict PCR values"] and seen == 1
    for i in range(LOG_LIMIT + 10):
        p.note(f"line {i}\n  with   spaces")
    assert len(p.log) == LOG_LIMIT and p.log[-1] == f"line {LOG_LIMIT + 9} with spaces"
    lines, seen = p.lines_since(seen)
    assert len(lines) == LOG_LIMIT and seen == LOG_LIMIT + 11  # the dropped lines are simply gone
    assert p.lines_since(seen) == ([], seen)
    p.finish("done")
    assert p.snapshot().outcome == "done"


def test_progress_is_safe_to_poll_while_written() -> None:
    p = BuildProgress()
    stop = threading.Event()
    errors: list[BaseException] = []

    def poll() -> None:
        seen = 0
        while not stop.is_set():
            try:
                p.snapshot()
                _, seen = p.lines_since(seen)
                p.rate(), p.eta()
            except BaseException as exc:  # pragma: no cover - what the test looks for
                errors.append(exc)

    t = threading.Thread(target=poll)
    t.start()
    for k in range(1, 200):
        p.start_step(k % 9 + 1, "x", 9)
        p.begin("y", 10_000)
        for i in range(50):
            p.update(i * 100)
        p.note("z")
    stop.set()
    t.join()
    assert errors == []


def test_async_sinks_hash_exactly_like_partition_sinks() -> None:
    sizes = {2: 3 * 65536 + 100, 3: 5 * 65536}
    data = {n: os.urandom(size) for n, size in sizes.items()}
    sync, threaded = PartitionSinks(sizes, 65536), AsyncSinks(sizes, 65536)
    try:
        for n, blob in data.items():
            pos = 0
            for length in (1000, 70000, 4096, 10**9):  # uneven pieces, like a writer's chunks
                piece = memoryview(blob)[pos : pos + length]
                sync(n, pos, piece)
                threaded(n, pos, piece)
                threaded(1, pos, piece)  # an unprotected partition is ignored
                pos += len(piece)
        assert threaded.finish() == sync.finish()
    finally:
        threaded.close()
    expected = b"".join(hashlib.sha256(data[3][i : i + 65536]).digest() for i in range(0, sizes[3], 65536))
    assert sync.finish()[3] == expected


def test_async_sinks_report_a_hashing_error_and_close_cleanly() -> None:
    threaded = AsyncSinks({2: 100}, 4096)
    threaded(2, 0, b"x" * 60)
    threaded(2, 10, b"y")  # goes backwards: the hasher refuses it (on its own thread)
    with pytest.raises(ValueError):
        threaded.finish()
    threaded.close()
    abandoned = AsyncSinks({2: 1 << 20}, 4096)
    for i in range(20):
        abandoned(2, i * 4096, b"z" * 4096)
    abandoned.close()  # a cancelled build: returns, no thread left behind
    assert not abandoned._thread.is_alive()


def test_staging_commits_atomically_and_rolls_back(tmp_path: Path) -> None:
    out = tmp_path / "t.raw"
    staging = Staging(out)
    assert staging.dir.parent == tmp_path and staging.dir.name.startswith(".t.raw.build-")
    a, b = staging.path("a"), staging.path("b")
    a.write_text("A")
    b.write_text("B")
    (tmp_path / "t.raw.b").write_text("old")
    with pytest.raises(OutputExistsError):
        staging.commit([(a, tmp_path / "t.raw.a"), (b, tmp_path / "t.raw.b")])
    assert not (tmp_path / "t.raw.a").exists() and (tmp_path / "t.raw.b").read_text() == "old"
    extra = tmp_path / "extra.txt"

    def make_extra() -> list[Path]:
        extra.write_text("E")
        return [extra]

    b.unlink()  # the second rename fails: everything renamed or created so far is removed again
    with pytest.raises(FileNotFoundError):
        staging.commit(
            [(a, tmp_path / "t.raw.a"), (b, tmp_path / "t.raw.b")], overwrite=True, extra=make_extra
        )
    assert not (tmp_path / "t.raw.a").exists() and not extra.exists()
    staging.remove()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.raw.b"]

    staging = Staging(out)
    staging.path("a").write_text("A")
    staging.commit([(staging.path("a"), out)])
    assert out.read_text() == "A" and sorted(p.name for p in tmp_path.iterdir()) == ["t.raw", "t.raw.b"]
    with pytest.raises(ShieldwrightError, match="does not exist"):
        Staging(tmp_path / "missing" / "t.raw")


def test_os_errors_read_as_one_line() -> None:
    full = os_error(OSError(28, "No space left on device", "/data/out/x.raw"), "in step 5 (Write)")
    assert isinstance(full, OutOfSpaceError)
    assert full.one_line() == (
        "not enough space on /data/out in step 5 (Write) (free some space or write the output elsewhere; "
        "nothing was left behind)"
    )
    other = os_error(OSError(13, "Permission denied", "/x"), "in step 7 (Update the ESP)")
    assert other.message == "cannot continue in step 7 (Update the ESP): /x: Permission denied"


def test_file_hasher(tmp_path: Path) -> None:
    path = tmp_path / "f"
    data = os.urandom(3 * 1024 * 1024 + 7)
    path.write_bytes(data)
    progress = ProgressState()
    assert FileHasher(path).result(progress=progress) == hashlib.sha256(data).hexdigest()
    assert progress.done == progress.total == len(data)
    FileHasher(path).stop()  # abandoning is quiet


def test_newest_kernel_compares_versions_number_by_number() -> None:
    assert version_key("6.1.0-28-cloud-amd64") > version_key("6.1.0-9-cloud-amd64")
    assert version_key("6.10.2") > version_key("6.9.12") > version_key(None)
    # A file name in a hostile image: "²" is a digit to str.isdigit() that int() cannot read.
    assert version_key("\u00b2") == ((0, "\u00b2"),) and version_key("6-\u00b2")[0] == (1, 6)

    class Entry:
        def __init__(self, version: str | None) -> None:
            self.version = version

    entries = [Entry("6.1.0-9-amd64"), Entry("6.1.0-28-amd64"), Entry(None), Entry("6.1.0-28-amd64")]
    assert newest_kernel(entries) is entries[1]  # type: ignore[arg-type]
    with pytest.raises(ShieldwrightError, match="no kernel"):
        newest_kernel([])


class _FakeImageUki:
    """make_uki on a made-up image: two kernels with their initrds in the XBOOTLDR and a UKI in the ESP.

    The image's files are read by name and ``build_uki`` is replaced by a recorder, so what is graded is
    which files the recipe's options select - not the UKI format (tests/boot grades that)."""

    FILES = {
        (2, "/vmlinuz-6.1.0-9-amd64", "kernel"): b"old kernel",
        (2, "/initrd.img-6.1.0-9-amd64", "initrd"): b"old initrd",
        (2, "/vmlinuz-6.1.0-28-amd64", "kernel"): b"new kernel",
        (2, "/initrd.img-6.1.0-28-amd64", "initrd"): b"new initrd",
        (1, "/EFI/Linux/debian.efi", "uki"): b"existing uki",
    }

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        import app.template.build.boot as boot
        from app.boot.sources import BootFile
        from app.disk.model import DiskLayout, Partition, Role

        self.files = [BootFile(n, path, kind, len(data)) for (n, path, kind), data in self.FILES.items()]
        parts = [Partition(n, name, "t", name, "g", 2048 * n, 2048 * n + 2047, 1 << 20, "fat", role)
                 for n, name, role in ((1, "esp", Role.ESP), (2, "boot", Role.XBOOTLDR))]  # fmt: skip
        self.layout = DiskLayout("fake.img", "raw", 8 << 20, 512, None, parts)
        self.built: list[object] = []
        self.stub = tmp_path / "stub.efi"
        self.stub.write_bytes(b"stub")

        def listed(image: object, layout: DiskLayout, cancel: object) -> list[BootFile]:
            numbers = {p.number for p in layout.partitions}
            return [f for f in self.files if f.partition_number in numbers]

        monkeypatch.setattr(boot, "list_boot_files", listed)
        monkeypatch.setattr(
            boot, "read_boot_file", lambda image, layout, f: self.FILES[(f.partition_number, f.path, f.kind)]
        )
        monkeypatch.setattr(boot, "build_uki", lambda inputs, signer: self.built.append(inputs) or b"MZ")
        monkeypatch.setattr(boot, "inspect_uki", lambda data: UkiInfoStandIn())

    def make(self, **options: Any) -> tuple[Any, Any]:
        from app.progress import CancelToken
        from app.template.build.boot import make_uki
        from app.template.recipe import UkiOptions

        uki = UkiOptions(stub=self.stub, cmdline="quiet", os_release="ID=test\n", **options)
        built = make_uki(uki, None, self.layout, None, cancel=CancelToken())
        return built, self.built[-1]


class UkiInfoStandIn:
    size, stub, cmdline, sections = 2, None, "quiet", ()


def test_make_uki_replaces_an_existing_uki_with_the_recipes_kernel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Regression: ``existing_action = "replace"`` ignored ``kernel`` and ``initrds`` and took the newest
    kernel, while docs/formats/recipe.md (and the wizard, which lets the user pick the kernel) build it
    "as with source = image"."""
    fake = _FakeImageUki(monkeypatch, tmp_path)
    existing = {"source": "existing", "existing_action": "replace", "existing_uki": "1:/EFI/Linux/debian.efi"}
    built, inputs = fake.make(**existing, kernel="2:/vmlinuz-6.1.0-9-amd64")
    assert (inputs.linux, inputs.initrds) == (b"old kernel", [b"old initrd"])
    assert built.kernel == "2:/vmlinuz-6.1.0-9-amd64" and built.initrds == ("2:/initrd.img-6.1.0-9-amd64",)
    built, inputs = fake.make(
        **existing, kernel="2:/vmlinuz-6.1.0-9-amd64", initrds=["2:/initrd.img-6.1.0-28-amd64"]
    )
    assert (inputs.linux, inputs.initrds) == (b"old kernel", [b"new initrd"])
    # Without a kernel, the newest (as with source = image), and the same choice for source = image.
    assert fake.make(**existing)[1].linux == b"new kernel"
    assert fake.make(kernel="2:/vmlinuz-6.1.0-9-amd64")[1].linux == b"old kernel"
    # Unsigned without a signer (the wizard's preview before a certificate is loaded); keeping needs none,
    # re-signing does.
    assert built.signed is False
    kept, _ = fake.make(source="existing", existing_action="keep", existing_uki="1:/EFI/Linux/debian.efi")
    assert (kept.action, kept.kernel, kept.signed) == ("kept", "1:/EFI/Linux/debian.efi", False)
    with pytest.raises(BootSourceError, match="no UEFI signing key"):
        fake.make(source="existing", existing_action="resign", existing_uki="1:/EFI/Linux/debian.efi")
    with pytest.raises(BootSourceError, match="kernel '/vmlinuz' is not a reference PARTNUM:/path"):
        fake.make(kernel="/vmlinuz")


def _doc(evil: str) -> dict:
    part = {"number": 1, "name": evil, "role": "root", "type_guid": "t", "type_name": evil,
            "partition_guid": "g", "first_lba": 2048, "last_lba": 4095, "size_bytes": 1 << 20,
            "content": "ext4"}  # fmt: skip
    signer = {"subject": f"CN={evil}", "issuer": "CN=x", "serial": "1", "sha256_fingerprint": "ab" * 32}
    return {
        "created": "2026-01-01T00:00:00Z",
        "tool": {"name": "shieldwright", "version": "0"},
        "template": {"name": evil, "version": "1.0.0.0"},
        "input": {"path": f"/in/{evil}.img", "format": "raw", "virtual_size": 4 << 20, "sha256": "aa" * 32},
        "output": {"path": "out.raw", "format": "raw", "virtual_size": 4 << 20, "sha256": "bb" * 32},
        "partitions": {"before": [part], "after": [{**part, "protection": "encrypted", "content": "luks2"}]},
        "uki": {
            "esp_paths": ["\\EFI\\Linux\\x.efi"],
            "sha256": "cc" * 32,
            "authenticode_sha256": "dd" * 32,
            "size_bytes": 10,
            "stub": "systemd-stub 252",
            "kernel": "2:/k",
            "uname": "6.1",
            "initrds": [],
            "cmdline": evil,
            "os_release": evil,
            "action": "built",
            "source": "image",
        },  # fmt: skip
        "pcr_predictions": {"sha256": {"11": {"": "ee" * 32}}},
        "catalog": {
            "path": "out.raw.vsc",
            "esp_path": "\\EFI\\Shieldwright\\template.vsc",
            "block_size": 1 << 20,
            "hash": "sha256",
            "partitions": [],
        },  # fmt: skip
        "signers": {"uefi": signer, "catalog": signer},
        "luks": [],
        "notes": [evil],
    }


def test_report_escapes_everything_it_is_given() -> None:
    evil = '<script>alert("x")</script>&<img src=x>'
    html = render_report(_doc(evil), [("template", f"{evil}.raw", 1, "ff" * 32)])
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&lt;img src=x&gt;" in html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
