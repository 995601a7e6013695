"""The template build, graded by independent tools: sgdisk, cryptsetup, openssl cms, mtools, fsck.fat,
osslsigncode, sbverify, qemu-img - and ``shieldwright vsc verify`` for the catalog (its own tests grade it).

Base: the demo image (ESP, XBOOTLDR, root). Most tests share one raw build that protects only the root
(partition 3), so partition 2 is a *copied* partition whose bytes must come through unchanged. Issue 7's
"Done means" 2 is here too: a cancel and an injected failure at the start of every step, a full disk in
the middle of the streaming pass, and an input that cannot be read - each leaves an empty output folder
and an unchanged input, and reads as one line on the command line.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app.errors import (
    CancelledError,
    ImageError,
    OutOfSpaceError,
    OutputExistsError,
    ShieldwrightError,
    SignatureError,
)
from app.luks.container import generate_recovery_key
from app.progress import CancelToken
from app.template.manifest import verify_manifest
from app.template.pipeline import STEPS, BuildProgress, artifact_paths
from tests.build_helpers import (
    PASSPHRASE,
    BuildKeys,
    StepHook,
    build,
    extract_partition,
    lba_ranges,
    make_keys,
    make_recipe,
    partition_sha256,
    sha256_file,
)
from tests.conftest import require_tool, run
from tests.luks.cryptsetup import luks_dump
from tests.luks.cryptsetup import test_passphrase as cryptsetup_test_passphrase
from tests.signing.pe_helpers import osslsigncode_calculated_digest, sbverify

ROOT = Path(__file__).resolve().parents[1]
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> BuildKeys:
    return make_keys(tmp_path_factory.mktemp("build-keys"))


@pytest.fixture(scope="module")
def base_sha256(demo_image: Path) -> str:
    return sha256_file(demo_image)


@pytest.fixture(scope="module")
def raw_build(demo_image: Path, keys: BuildKeys, tmp_path_factory: pytest.TempPathFactory):
    out_dir = tmp_path_factory.mktemp("raw-build")
    recipe = make_recipe(
        demo_image, out_dir / "template.raw", keys, recovery_key_file=out_dir / "recovery.txt"
    )
    progress = BuildProgress()
    result = build(recipe, keys, progress=progress)
    return result, progress


@pytest.fixture(scope="module")
def manifest(raw_build) -> dict:
    return json.loads(raw_build[0].manifest.read_text())


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *map(str, args)], cwd=ROOT, capture_output=True, text=True
    )


def _mcopy(esp: Path, path: str, dest: Path) -> bytes:
    require_tool("mcopy")
    subprocess.run(["mcopy", "-n", "-i", str(esp), f"::{path}", str(dest)], env=MTOOLS_ENV, check=True)
    return dest.read_bytes()


# -- the finished template ----------------------------------------------------------------------------


def test_result_names_every_artefact(raw_build) -> None:
    result, progress = raw_build
    paths = artifact_paths(result.output)
    assert (result.output, result.catalog, result.manifest, result.manifest_signature, result.report) == (
        paths["template"], paths["catalog"], paths["manifest"], paths["manifest_signature"], paths["report"],
    )  # fmt: skip
    names = sorted(p.name for p in result.output.parent.iterdir())
    assert names == sorted([p.name for p in paths.values()] + ["recovery.txt"])  # no temporary left
    assert progress.outcome == "done" and progress.step_index == len(STEPS)
    assert [name for name, _ in progress.step_seconds] == list(STEPS)
    summary = result.summary
    assert summary["artefacts"][0] == {
        "role": "template", "path": str(result.output), "size_bytes": result.output.stat().st_size,
        "sha256": sha256_file(result.output),
    }  # fmt: skip
    json.dumps(summary)  # JSON-ready


def test_gpt_is_clean(raw_build) -> None:
    require_tool("sgdisk")
    out = run("sgdisk", "-v", raw_build[0].output).stdout
    assert "No problems found" in out, out


def test_root_opens_with_the_provisioning_passphrase_and_the_recovery_key(
    raw_build, manifest: dict, tmp_path: Path
) -> None:
    result = raw_build[0]
    root = extract_partition(result.output, 3, tmp_path / "root.img")
    assert cryptsetup_test_passphrase(root, PASSPHRASE, tmp_path) == 0
    recovery = result.recovery_key_file.read_text().strip()
    assert re.fullmatch(r"[cbdefghijklnrtuv]{8}(-[cbdefghijklnrtuv]{8}){7}", recovery)
    assert oct(result.recovery_key_file.stat().st_mode & 0o777) == "0o600"
    assert cryptsetup_test_passphrase(root, recovery, tmp_path) == 0
    assert cryptsetup_test_passphrase(root, PASSPHRASE + "x", tmp_path) == 2
    dump = luks_dump(root)
    (luks,) = manifest["luks"]
    assert re.search(rf"^UUID:\s+{luks['uuid']}$", dump, re.MULTILINE), dump
    assert "aes-xts-plain64" in dump and "sector: 4096 [bytes]" in dump
    assert [k["kind"] for k in luks["keyslots"]] == ["passphrase", "recovery"]
    assert luks["keyslots"][0]["kdf"] == {"type": "pbkdf2", "hash": "sha256", "iterations": 1000}


def test_vsc_verify_passes_and_a_flipped_byte_fails(raw_build, keys: BuildKeys, tmp_path: Path) -> None:
    result = raw_build[0]
    ok = _cli("vsc", "verify", result.output, result.catalog, "--trust", keys.catalog.cert_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: all" in ok.stdout
    show = json.loads(_cli("vsc", "show", result.catalog, "--json").stdout)
    assert [p["number"] for p in show["partitions"]] == [3]  # protected only: never the ESP
    assert (show["template_name"], show["template_version"]) == ("Pipeline test", "1.2.3.4")

    copy = tmp_path / "flipped.raw"
    run("cp", "--sparse=always", result.output, copy)
    first, _ = next((a, b) for n, (a, b) in lba_ranges(copy).items() if n == 3)
    offset = first * 512 + 40 * MiB + 12345
    with open(copy, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    bad = _cli("vsc", "verify", copy, result.catalog, "--trust", keys.catalog.cert_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "partition 3" in bad.stderr


def test_manifest_signature_verifies_with_openssl(raw_build, keys: BuildKeys, tmp_path: Path) -> None:
    require_tool("openssl")
    result = raw_build[0]

    def verify(content: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(result.manifest_signature),
             "-content", str(content), "-CAfile", str(keys.catalog.cert_path), "-purpose", "any",
             "-out", os.devnull],
            capture_output=True, text=True,
        )  # fmt: skip

    good = verify(result.manifest)
    assert good.returncode == 0, good.stderr
    tampered = tmp_path / "tampered.json"
    tampered.write_bytes(result.manifest.read_bytes().replace(b'"Pipeline test"', b'"Pipeline tesT"'))
    assert verify(tampered).returncode != 0
    # The engine's own reader agrees (and names the signer).
    signature = result.manifest_signature.read_bytes()
    signer = verify_manifest(result.manifest.read_bytes(), signature, trusted=[keys.catalog.cert])
    assert signer == keys.catalog.cert
    with pytest.raises(SignatureError):
        verify_manifest(tampered.read_bytes(), signature, trusted=[keys.catalog.cert])


def test_manifest_says_what_was_built(raw_build, manifest: dict, keys: BuildKeys, base_sha256: str,
                                      demo_image: Path, tmp_path: Path) -> None:  # fmt: skip
    result = raw_build[0]
    for key in ("tool", "template", "input", "output", "partitions", "uki", "pcr_predictions", "catalog",
                "signers", "luks"):  # fmt: skip
        assert key in manifest, key
    assert manifest["tool"]["name"] == "shieldwright" and manifest["tool"]["version"]
    assert manifest["template"] == {"name": "Pipeline test", "version": "1.2.3.4"}
    assert manifest["input"]["sha256"] == base_sha256
    assert manifest["output"]["sha256"] == sha256_file(result.output)
    before = {p["number"]: p for p in manifest["partitions"]["before"]}
    after = {p["number"]: p for p in manifest["partitions"]["after"]}
    assert [before[n]["role"] for n in (1, 2, 3)] == ["esp", "xbootldr", "root"]
    assert [after[n]["protection"] for n in (1, 2, 3)] == ["none", "none", "encrypted"]
    grown = -(-before[3]["size_bytes"] // 4096) * 4096 + 16 * MiB  # LUKS2 header + whole 4 KiB sectors
    assert after[3]["content"] == "luks2" and after[3]["size_bytes"] == grown
    for n, (first, last) in lba_ranges(result.output).items():  # the GPT says what the manifest says
        assert (after[n]["first_lba"], after[n]["last_lba"]) == (first, last)

    phases = manifest["pcr_predictions"]["sha256"]["11"]
    assert set(phases) >= {"", "enter-initrd", "enter-initrd:leave-initrd"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in phases.values())

    esp = extract_partition(result.output, 1, tmp_path / "esp.img")
    uki_path = manifest["uki"]["esp_paths"][0]
    assert uki_path == "\\EFI\\Linux\\pipeline-test.efi"
    uki = _mcopy(esp, uki_path.replace("\\", "/"), tmp_path / "uki.efi")
    assert manifest["uki"]["sha256"] == hashlib.sha256(uki).hexdigest()
    assert (
        osslsigncode_calculated_digest(tmp_path / "uki.efi").hex() == manifest["uki"]["authenticode_sha256"]
    )
    assert sbverify(tmp_path / "uki.efi", keys.uefi_cert).returncode == 0

    fingerprints = {
        role: run("openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256").stdout
        .split("=", 1)[1].strip().replace(":", "").lower()
        for role, cert in (("uefi", keys.uefi_cert), ("catalog", keys.catalog.cert_path))
    }  # fmt: skip
    assert {role: s["sha256_fingerprint"] for role, s in manifest["signers"].items()} == fingerprints
    show = json.loads(_cli("vsc", "show", result.catalog, "--json").stdout)
    assert [(p["number"], p["digest"]) for p in show["partitions"]] == [
        (p["number"], p["digest"]) for p in manifest["catalog"]["partitions"]
    ]
    assert manifest["catalog"]["sha256"] == sha256_file(result.catalog)
    assert manifest["catalog"]["esp_path"] == "\\EFI\\Shieldwright\\template.vsc"


def test_no_secret_reaches_the_output_folder_or_the_log(raw_build) -> None:
    result, progress = raw_build
    recovery = result.recovery_key_file.read_bytes().strip()
    for path in result.output.parent.iterdir():
        data = path.read_bytes()
        assert PASSPHRASE.encode() not in data, path
        if path != result.recovery_key_file:
            assert recovery not in data, path
    log = progress.log_text().encode()
    assert PASSPHRASE.encode() not in log and recovery not in log
    assert PASSPHRASE not in json.dumps(result.summary) and recovery.decode() not in json.dumps(
        result.summary
    )


def test_copied_partition_is_byte_identical_and_the_esp_keeps_its_files(
    raw_build, demo_image: Path, tmp_path: Path
) -> None:
    out = raw_build[0].output
    assert partition_sha256(out, 2) == partition_sha256(demo_image, 2)
    assert lba_ranges(out)[2] == lba_ranges(demo_image)[2]
    old = extract_partition(demo_image, 1, tmp_path / "old-esp.img")
    new = extract_partition(out, 1, tmp_path / "new-esp.img")
    run("fsck.fat", "-n", new)
    for path in ("/loader/loader.conf", "/EFI/systemd/systemd-bootx64.efi", "/EFI/BOOT/BOOTX64.EFI"):
        name = path.rsplit("/", 1)[1]
        assert _mcopy(new, path, tmp_path / f"new-{name}") == _mcopy(old, path, tmp_path / f"old-{name}"), (
            path
        )
    csv = _mcopy(new, "/EFI/debian/BOOTX64.CSV", tmp_path / "BOOTX64.CSV").decode("utf-16")
    assert csv.lstrip("\ufeff").startswith("shimx64.efi,pipeline-test,\\EFI\\Linux\\pipeline-test.efi ,")
    assert (
        _mcopy(new, "/EFI/Shieldwright/template.vsc", tmp_path / "t.vsc") == raw_build[0].catalog.read_bytes()
    )


def test_the_input_is_unchanged(raw_build, demo_image: Path, base_sha256: str) -> None:
    assert sha256_file(demo_image) == base_sha256


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_report_is_self_contained(raw_build, manifest: dict) -> None:
    html = raw_build[0].report.read_text()
    parser = _Html()
    parser.feed(html)
    tags = [t for t, _ in parser.tags]
    assert "style" in tags and "script" not in tags and "link" not in tags and "img" not in tags
    assert not [a for _, attrs in parser.tags for k, a in attrs.items() if k in ("src", "href")]
    assert "http://" not in html and "https://" not in html
    assert manifest["output"]["sha256"] in html and manifest["uki"]["authenticode_sha256"] in html
    assert manifest["pcr_predictions"]["sha256"]["11"][""] in html
    assert html.count('class="bar"') == 2  # before and after


# -- other formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["vhdx", "qcow2"])
def test_vhdx_and_qcow2_hold_exactly_the_raw_template(
    fmt: str, demo_image: Path, keys: BuildKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export step converts the staged raw template; a spy keeps a copy of that raw to compare with."""
    import app.template.build.export as export_module

    require_tool("qemu-img")
    real_export = export_module.export
    raw_copy = tmp_path / "raw-template.raw"

    def spy(raw: Path, dst: Path, fmt: str, **kw):
        run("cp", "--sparse=always", raw, raw_copy)
        return real_export(raw, dst, fmt, **kw)

    monkeypatch.setattr(export_module, "export", spy)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    name = 'Odd <b>"name"</b> & co'  # the report must escape it
    recovery = generate_recovery_key()  # as the wizard passes it: enrolled, written nowhere
    recipe = make_recipe(demo_image, out_dir / f"template.{fmt}", keys, fmt=fmt, name=name)
    result = build(recipe, keys, recovery_key=recovery)
    check = run("qemu-img", "check", "-f", fmt, result.output).stdout
    assert "No errors were found" in check, check
    info = json.loads(run("qemu-img", "info", "--output=json", result.output).stdout)
    assert info["format"] == fmt
    compare = run("qemu-img", "compare", "-f", fmt, "-F", "raw", result.output, raw_copy).stdout
    assert "Images are identical" in compare
    manifest = json.loads(result.manifest.read_text())
    assert manifest["output"]["sha256"] == sha256_file(result.output)
    assert [k["kind"] for k in manifest["luks"][0]["keyslots"]] == ["passphrase", "recovery"]
    assert result.recovery_key_file is None and manifest["recovery_key_file"] is None
    assert all(recovery.encode() not in p.read_bytes() for p in out_dir.iterdir())
    html = result.report.read_text()
    assert "Odd &lt;b&gt;&quot;name&quot;&lt;/b&gt; &amp; co" in html and "<b>" not in html
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        p.name for p in artifact_paths(result.output).values()
    )


# -- nothing left behind ------------------------------------------------------------------------------


def _stamp(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@pytest.fixture(scope="module")
def input_stamp(demo_image: Path) -> tuple[int, ...]:
    return _stamp(demo_image)


@pytest.mark.parametrize("how", ["cancel", "fail"])
@pytest.mark.parametrize("step", STEPS)
def test_cancel_or_failure_at_each_step_leaves_nothing(
    step: str, how: str, demo_image: Path, input_stamp: tuple[int, ...], keys: BuildKeys, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    token = CancelToken()
    hook = StepHook(step, cancel=token) if how == "cancel" else StepHook(step, error=RuntimeError("injected"))
    recipe = make_recipe(demo_image, out_dir / "template.raw", keys, recovery_key_file=out_dir / "rk.txt")
    expected = CancelledError if how == "cancel" else RuntimeError
    with pytest.raises(expected):
        build(recipe, keys, progress=hook, cancel=token)
    assert hook.steps_seen[-1] == step
    assert hook.outcome == ("cancelled" if how == "cancel" else "failed")
    assert list(out_dir.iterdir()) == []
    assert _stamp(demo_image) == input_stamp  # never written (the full SHA-256 is checked at the end)


def test_keys_made_beside_a_failing_uki_are_waited_for_and_wiped(
    demo_image: Path, keys: BuildKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LUKS2 headers are derived on a thread while the UKI is built: when the UKI step fails, the build
    still waits for that thread, drops its volume keys (the data ciphers) and leaves nothing behind."""
    import threading

    import app.template.build.boot
    import app.template.build.keys

    made: list = []
    real_prepare = app.template.build.keys.prepare_keys

    def prepare(*args, **kwargs):
        prepared = real_prepare(*args, **kwargs)
        made.append(prepared)
        return prepared

    def failing_uki(*args, **kwargs):
        # Fails while the keys thread is still deriving: its pbkdf2 digests take ~125 ms each.
        raise RuntimeError("injected UKI failure")

    monkeypatch.setattr(app.template.build.keys, "prepare_keys", prepare)
    monkeypatch.setattr(app.template.build.boot, "make_uki", failing_uki)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    recipe = make_recipe(demo_image, out_dir / "template.raw", keys, recovery_key_file=out_dir / "rk.txt")
    with pytest.raises(RuntimeError, match="injected UKI failure"):
        build(recipe, keys)
    assert not [t for t in threading.enumerate() if t.name.startswith("luks-keys")]
    assert len(made) == 1 and made[0].crypto == {}  # finished, and its ciphers (volume keys) dropped
    assert list(out_dir.iterdir()) == []


def test_refuses_to_overwrite_unless_asked(raw_build, demo_image: Path, keys: BuildKeys) -> None:
    result = raw_build[0]
    before = result.manifest.read_bytes()
    recipe = make_recipe(demo_image, result.output, keys)
    with pytest.raises(OutputExistsError):
        build(recipe, keys)
    assert result.manifest.read_bytes() == before


def test_full_disk_mid_write_is_one_clear_error(
    demo_image: Path, base_sha256: str, keys: BuildKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    real = os.pwrite
    written = [0]

    def pwrite(fd: int, data, offset: int) -> int:
        written[0] += len(data)
        if written[0] > 200 * MiB:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    hook = BuildProgress()
    with pytest.raises(OutOfSpaceError) as info:
        build(make_recipe(demo_image, out_dir / "template.raw", keys), keys, progress=hook)
    assert "\n" not in info.value.one_line() and "space" in info.value.message
    assert hook.step_name == "Write the template (copy, encrypt, hash)"
    assert list(out_dir.iterdir()) == []
    assert sha256_file(demo_image) == base_sha256


def test_a_failing_write_in_any_later_step_is_translated_and_cleaned_up(
    demo_image: Path, keys: BuildKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError from deep inside a step (here: writing the ESP back) is a one-line error; nothing stays."""
    import app.disk.esp as esp

    def full(fs: Path, raw_image: Path, *args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(raw_image))

    monkeypatch.setattr(esp, "_write_back", full)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(OutOfSpaceError) as info:
        build(make_recipe(demo_image, out_dir / "template.raw", keys), keys)
    assert info.value.message == f"not enough space on {out_dir} in step 7 (Update the ESP)"
    assert list(out_dir.iterdir()) == []


def test_an_input_written_to_during_the_build_is_refused(
    demo_image: Path, keys: BuildKeys, tmp_path: Path
) -> None:
    """The output's digest is computed from the input once more; if the input changed meanwhile, the build
    must not finish with papers that disagree with the files."""
    base = tmp_path / "base.img"
    subprocess.run(["cp", "--sparse=always", str(demo_image), str(base)], check=True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    class Touch(BuildProgress):
        def start_step(self, number: int, name: str, count: int) -> None:
            super().start_step(number, name, count)
            if name == "Export":  # someone writes to the base image (same bytes, but a write all the same)
                with open(base, "r+b") as f:
                    first = f.read(1)
                    f.seek(0)
                    f.write(first)

    with pytest.raises(ShieldwrightError) as info:
        build(make_recipe(base, out_dir / "template.raw", keys), keys, progress=Touch())
    assert "changed while the build was reading it" in info.value.message
    assert list(out_dir.iterdir()) == []


def _cli_in_process(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from app.cli import main

    rc = main(args)
    return rc, capsys.readouterr().err


def _cli_args(base: Path, out: Path, keys: BuildKeys, passfile: Path) -> list[str]:
    return ["build", "--base", str(base), "-o", str(out), "--name", "CLI errors", "--protect", "3",
            "--uefi-cert", str(keys.uefi_cert), "--uefi-key", str(keys.uefi_key),
            "--key-passphrase-file", str(keys.passphrase_file), "--passphrase-file", str(passfile),
            "--kdf", "pbkdf2", "--iter-time", "1"]  # fmt: skip


def _passfile(tmp_path: Path) -> Path:
    path = tmp_path / "provisioning.pass"
    path.write_text(PASSPHRASE)
    path.chmod(0o600)
    return path


def _assert_one_line_error(err: str, *words: str) -> None:
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("shieldwright: error: "), err
    for word in words:
        assert word in last, last


def test_cli_full_disk(demo_image: Path, keys: BuildKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    real = os.pwrite

    def pwrite(fd: int, data, offset: int) -> int:
        if offset > 300 * MiB:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    rc, err = _cli_in_process(_cli_args(demo_image, out_dir / "t.raw", keys, _passfile(tmp_path)), capsys)
    assert rc == 2
    _assert_one_line_error(err, "not enough space")
    assert list(out_dir.iterdir()) == []


def test_cli_input_that_cannot_be_read(
    demo_image: Path, base_sha256: str, keys: BuildKeys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A read error in the middle of the root partition (a failing disk), then a path that does not exist."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    real = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        if n > 4096 and 300 * MiB <= offset < 500 * MiB:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", pread)
    args = _cli_args(demo_image, out_dir / "t.raw", keys, _passfile(tmp_path))
    rc, err = _cli_in_process(args, capsys)
    assert rc == 2
    _assert_one_line_error(err, "read error", str(demo_image))
    assert list(out_dir.iterdir()) == []
    monkeypatch.setattr(os, "pread", real)
    assert sha256_file(demo_image) == base_sha256

    args[args.index("--base") + 1] = str(tmp_path / "missing.img")
    rc, err = _cli_in_process(args, capsys)
    assert rc == 2
    _assert_one_line_error(err, "no such file")
    assert list(out_dir.iterdir()) == []


def test_unreadable_input_raises_image_error(keys: BuildKeys, tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(64 * 1024))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(ImageError):
        build(make_recipe(tmp_path / "nothing-here.img", out_dir / "t.raw", keys), keys)
    with pytest.raises(ShieldwrightError) as info:  # not a disk image: one line, never a bug
        build(make_recipe(junk, out_dir / "t.raw", keys), keys)
    assert "template" in info.value.message or "GPT" in info.value.message, info.value
    assert list(out_dir.iterdir()) == []


def test_output_must_not_be_the_input(demo_image: Path, keys: BuildKeys, base_sha256: str) -> None:
    with pytest.raises(ShieldwrightError) as info:
        build(make_recipe(demo_image, demo_image, keys), keys)
    assert "base image" in str(info.value)
    assert sha256_file(demo_image) == base_sha256


def test_after_all_these_builds_the_input_is_unchanged(demo_image: Path, base_sha256: str) -> None:
    """Last in the file: every build above, finished, cancelled or failed, only ever read the input."""
    assert sha256_file(demo_image) == base_sha256
