"""Issue 17 item 7: a recipe must not publish private host files in the clear.

A UKI built from host files (``uki.source = "files"``, a ``uki.stub``) is stored unencrypted in the
template's ESP. A host file that other users of the build machine may not read (``/etc/shadow``, a key)
is refused unless the build is told to allow it, and every host file that went in is listed in the
manifest and the report. Graded with a real ``shieldwright build`` process, the signed manifest's JSON,
the report's text, and mtools reading the UKI back out of the template's ESP.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.template.recipe import SecretSource, UkiOptions
from app.template.recipe_file import save_recipe
from tests.build_helpers import PASSPHRASE, BuildKeys, make_keys, make_recipe
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
MARKER = b"root:$y$j9T$issue17-private-marker$:19000:0:99999:7:::\n"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> BuildKeys:
    return make_keys(tmp_path_factory.mktemp("issue17-private-keys"))


@pytest.fixture(scope="module")
def host_files(demo_image: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(kernel 0644, a private "shadow" 0640, a provisioning passphrase file 0600) on the host."""
    from app.boot.sources import list_boot_files, read_boot_file
    from app.disk.image import open_image
    from app.disk.layout import layout_of

    d = tmp_path_factory.mktemp("issue17-host")
    with open_image(demo_image) as image:
        layout = layout_of(image)
        kernel_file = next(f for f in list_boot_files(image, layout) if f.kind == "kernel")
        kernel = d / "vmlinuz"
        kernel.write_bytes(read_boot_file(image, layout, kernel_file))
    kernel.chmod(0o644)
    shadow = d / "shadow"
    shadow.write_bytes(MARKER)
    shadow.chmod(0o640)  # like Debian's /etc/shadow: owner and group, not others
    passfile = d / "provisioning.pass"
    passfile.write_text(PASSPHRASE + "\n")
    passfile.chmod(0o600)
    return kernel, shadow, passfile


def _recipe_file(
    demo_image: Path, out: Path, keys: BuildKeys, kernel: Path, initrd: Path, where: Path
) -> Path:
    recipe = make_recipe(demo_image, out, keys)
    recipe.uki = UkiOptions(
        source="files", kernel=str(kernel), initrds=[str(initrd)], cmdline="console=ttyS0"
    )
    recipe.encryption.passphrase = SecretSource.prompt()
    return save_recipe(recipe, where)


def _build(recipe: Path, passfile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "app", "build", str(recipe), "--passphrase-file", str(passfile), *extra]
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600
    )


def test_etc_shadow_as_an_initrd_is_an_error_unless_allowed(
    demo_image: Path, keys: BuildKeys, tmp_path
) -> None:
    """Regression (issue 17 item 7): failed on ecab7db because nothing judged the mode of host files a
    recipe publishes (there was no such check to import): ``uki.initrds = ["/etc/shadow"]`` only got the
    permission warning meant for passphrase files, and the build put the file in the clear into the ESP."""
    from app.findings import Severity
    from app.template.checks import private_host_file_problems, published_host_files

    shadow = Path("/etc/shadow")
    assert not shadow.stat().st_mode & stat.S_IROTH  # 0640 root:shadow on Debian, 0000 on Fedora
    recipe = make_recipe(demo_image, tmp_path / "t.raw", keys)
    recipe.uki = UkiOptions(source="files", kernel="/boot/vmlinuz", initrds=[str(shadow)])
    assert [(f.key, f.role, f.path) for f in published_host_files(recipe)][:2] == [
        ("uki.kernel", "kernel", Path("/boot/vmlinuz")),
        ("uki.initrds[0]", "initrd", shadow),
    ]
    (problem,) = private_host_file_problems(recipe, allow=False)
    assert problem.severity is Severity.ERROR and problem.key == "uki.initrds[0]"
    assert "/etc/shadow" in problem.text and "in the clear" in problem.text
    (allowed,) = private_host_file_problems(recipe, allow=True)
    assert allowed.severity is Severity.WARNING


def test_cli_refuses_a_private_initrd_before_anything_is_written(
    demo_image: Path, keys: BuildKeys, host_files, tmp_path: Path
) -> None:
    """Regression (issue 17 item 7): failed on ecab7db because the build exited 0 having copied the
    0640 "shadow" file into the UKI in the template's unencrypted ESP."""
    kernel, shadow, passfile = host_files
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    recipe = _recipe_file(demo_image, out_dir / "t.raw", keys, kernel, shadow, tmp_path / "r.toml")
    proc = _build(recipe, passfile)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("shieldwright: error: ")]
    assert len(errors) == 1 and "uki.initrds[0]" in errors[0] and str(shadow) in errors[0]
    assert "--allow-private-inputs" in errors[0] and "Step 1/9" not in proc.stderr
    assert list(out_dir.iterdir()) == []


def test_allowed_private_inputs_are_published_and_listed(
    demo_image: Path, keys: BuildKeys, host_files, tmp_path: Path
) -> None:
    """With --allow-private-inputs the build goes ahead, and the signed manifest and the report list every
    host file now readable in the template - the private one marked."""
    require_tool("mcopy")
    kernel, shadow, passfile = host_files
    out = tmp_path / "out" / "t.raw"
    out.parent.mkdir()
    recipe = _recipe_file(demo_image, out, keys, kernel, shadow, tmp_path / "r.toml")
    proc = _build(recipe, passfile, "--allow-private-inputs", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any("not readable by other users" in ln for ln in proc.stderr.splitlines() if "warning" in ln)

    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    listed = {f["role"]: f for f in manifest["host_files"]}
    assert set(listed) == {"kernel", "initrd", "stub"}
    assert listed["initrd"] == {
        "key": "uki.initrds[0]", "role": "initrd", "path": str(shadow), "size_bytes": len(MARKER),
        "sha256": hashlib.sha256(MARKER).hexdigest(), "mode": "0640", "private": True,
    }  # fmt: skip
    assert listed["kernel"]["private"] is False and listed["kernel"]["mode"] == "0644"
    assert listed["kernel"]["sha256"] == hashlib.sha256(kernel.read_bytes()).hexdigest()
    report = out.with_name(out.name + ".report.html").read_text()
    assert str(shadow) in report and "published because allowed" in report
    assert any("not readable by other users" in n for n in manifest["notes"])

    # What the manifest says is what anyone can read: the marker is in the UKI in the (unencrypted) ESP.
    esp = next(p for p in manifest["partitions"]["after"] if p["role"] == "esp")
    uki_path = manifest["uki"]["esp_paths"][0].replace("\\", "/")
    dest = tmp_path / "uki.efi"
    subprocess.run(["mcopy", "-n", "-i", f"{out}@@{esp['first_lba'] * 512}", f"::{uki_path}", str(dest)],
                   env=MTOOLS_ENV, check=True)  # fmt: skip
    assert MARKER in dest.read_bytes()


def test_the_uki_build_judges_the_file_it_opens(
    demo_image: Path, keys: BuildKeys, host_files, tmp_path
) -> None:
    """The last line of defence reads the mode from the open file: a file made private after the recipe was
    checked (or an API caller that skipped the check) is still refused."""
    from app.disk.image import open_image
    from app.disk.layout import layout_of
    from app.progress import CancelToken
    from app.template.build.boot import PrivateInputError, make_uki

    kernel, shadow, _ = host_files
    options = UkiOptions(source="files", kernel=str(kernel), initrds=[str(shadow)], cmdline="")
    with open_image(demo_image) as image:
        layout = layout_of(image)
        with pytest.raises(PrivateInputError) as caught:
            make_uki(options, image, layout, keys.uefi, cancel=CancelToken())
        assert "uki.initrds[0]" in caught.value.message
        built = make_uki(options, image, layout, keys.uefi, cancel=CancelToken(), allow_private=True)
    assert [(f.role, f.private) for f in built.host_files] == [
        ("stub", False),
        ("kernel", False),
        ("initrd", True),
    ]
