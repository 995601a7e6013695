"""verify_template on a template built from the existing engines: it passes, and each kind of damage makes
exactly the matching check fail. Where an independent tool has an opinion (sgdisk -v on the GPT), it is
asked too, so our verdict is not only our own."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from app.catalog.format import ESP_CATALOG_PATH
from app.errors import CancelledError, ImageError, ShieldwrightError
from app.progress import CancelToken, ProgressState
from app.template.verify import verify_template
from tests import template_helpers as th
from tests.catalog.helpers import writable_copy
from tests.conftest import qemu_convert, require_tool, run
from tests.signing.pe_helpers import osslsigncode_calculated_digest
from tests.template_helpers import ALL_CHECKS, UKI_CHECK, Template


@pytest.fixture(scope="module")
def template(small_disk: Path) -> Template:
    return th.build_template(small_disk)


def failed_names(report) -> set[str]:
    return {c.name for c in report.failed}


def test_a_fresh_template_passes_every_check(template: Template) -> None:
    progress = ProgressState()
    report = verify_template(template.path, trusted=[template.key.cert], progress=progress)
    assert report.ok, report.failed
    assert [c.name for c in report.checks] == ALL_CHECKS
    details = {c.name: c.detail for c in report.checks}
    assert "primary and backup valid" in details["GPT"]
    assert "fsck.fat -n finds no problems" in details["ESP"]
    assert "signed by CN=template-signer (trusted)" in details[UKI_CHECK]
    assert details["ESP"].startswith("partition 1: ")
    assert "Verify test 1.2.3.4" in details["Catalog"] and "partition(s) 3 match" in details["Catalog"]
    assert "both header copies valid" in details["LUKS2 partition 3"]
    assert progress.step  # the steps were reported
    assert report.to_dict()["ok"] is True and len(report.to_dict()["checks"]) == 5


def test_the_uki_check_states_the_authenticode_digest_osslsigncode_calculates(
    template: Template, tmp_path: Path
) -> None:
    uki = tmp_path / "uki.efi"
    uki.write_bytes(template.uki)
    report = verify_template(template.path, trusted=[template.key.cert])
    detail = {c.name: c.detail for c in report.checks}[UKI_CHECK]
    assert detail.endswith(f"Authenticode SHA-256 {osslsigncode_calculated_digest(uki).hex()}")


def test_without_trusted_certificates_signatures_are_checked_but_not_their_signer(template: Template) -> None:
    """Regression (issue 17 item 5): failed on ecab7db because the report was ``ok`` without any trust
    anchor: a template re-signed by anyone passed. Only an explicit ``accept_any_signer`` makes it ok now."""
    report = verify_template(template.path)
    assert not report.ok and failed_names(report) == {"Signer"}
    details = {c.name: c.detail for c in report.checks}
    assert "signer not checked" in details[UKI_CHECK] and "signer not checked" in details["Catalog"]
    assert details["Signer"].startswith("NOT checked: no trusted certificate was given")
    report = verify_template(template.path, accept_any_signer=True)
    assert report.ok and [c.name for c in report.checks] == ALL_CHECKS
    trusted = verify_template(template.path, trusted=[template.key.cert])
    assert trusted.ok and "Signer" not in {c.name for c in trusted.checks}


def test_an_untrusted_signer_fails_the_uki_and_the_catalog(template: Template) -> None:
    report = verify_template(template.path, trusted=[template.other.cert])
    assert not report.ok
    assert failed_names(report) == {UKI_CHECK, "Catalog"}


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (th.flip_in_uki, {UKI_CHECK}),
        (th.flip_in_catalog, {"Catalog"}),
        (th.flip_in_protected_data, {"Catalog"}),
        (th.flip_in_luks_secondary_header, {"LUKS2 partition 3", "Catalog"}),  # the header is catalogued
        (th.flip_in_primary_gpt, {"GPT"}),
        (th.flip_in_primary_gpt_entries, {"GPT"}),
        (th.flip_in_backup_gpt, {"GPT"}),
        (th.flip_in_second_fat, {"ESP"}),
    ],
    ids=lambda v: v.__name__ if callable(v) else "",
)
def test_damage_fails_the_matching_check(
    template: Template, tmp_path: Path, damage: Callable[[Template, Path], None], expected: set[str]
) -> None:
    image = th.copy_of(template, tmp_path / "t.raw")
    damage(template, image)
    report = verify_template(image, trusted=[template.key.cert])
    assert not report.ok
    assert failed_names(report) == expected, [(c.name, c.detail) for c in report.checks]


def test_failure_details_say_what_is_wrong(template: Template, tmp_path: Path) -> None:
    image = th.copy_of(template, tmp_path / "t.raw")
    th.flip_in_protected_data(template, image)
    th.flip_in_luks_secondary_header(template, image)
    th.flip_in_uki(template, image)
    details = {c.name: c.detail for c in verify_template(image).checks}
    assert "image digest mismatch" in details[UKI_CHECK]
    assert "2 block(s) differ" in details["Catalog"] and "partition 3 at byte offset 0" in details["Catalog"]
    assert "secondary" in details["LUKS2 partition 3"]


def test_gpt_verdicts_agree_with_sgdisk(template: Template, tmp_path: Path) -> None:
    """sgdisk -v (an independent GPT checker) finds no problem exactly when our GPT check passes."""
    require_tool("sgdisk")

    def sgdisk_clean(image: Path) -> bool:
        # sgdisk -v exits 0 and says "No problems found" even when it had to load the backup table;
        # the damage shows in its cautions and its per-copy "ERROR" lines (on stderr).
        proc = subprocess.run(["sgdisk", "-v", str(image)], capture_output=True, text=True)
        said = proc.stdout + proc.stderr
        return (
            proc.returncode == 0
            and "No problems found" in said
            and not re.search("ERROR|Caution|Warning", said)
        )

    assert sgdisk_clean(template.path)
    for damage in (th.flip_in_primary_gpt, th.flip_in_backup_gpt):
        image = th.copy_of(template, tmp_path / f"{damage.__name__}.raw")
        damage(template, image)
        assert not sgdisk_clean(image), damage.__name__
        assert failed_names(verify_template(image, trusted=[template.key.cert])) == {"GPT"}


def test_a_separate_catalog_file_is_used_instead_of_the_esp_copy(template: Template, tmp_path: Path) -> None:
    image = th.copy_of(template, tmp_path / "t.raw")
    run("mdel", "-i", f"{image}@@{template.esp_offset}", "::" + ESP_CATALOG_PATH.replace("\\", "/"))
    report = verify_template(image, trusted=[template.key.cert])
    assert failed_names(report) == {"Catalog"}
    assert "no \\EFI\\Shieldwright\\template.vsc in the ESP" in report.failed[0].detail

    vsc = tmp_path / "t.vsc"
    vsc.write_bytes(template.vsc)
    assert verify_template(image, vsc=vsc, trusted=[template.key.cert]).ok

    bad = bytearray(template.vsc)
    bad[len(bad) // 2] ^= 0x20
    vsc.write_bytes(bytes(bad))
    # the ESP's good copy is not consulted
    report = verify_template(template.path, vsc=vsc, trusted=[template.key.cert])
    assert failed_names(report) == {"Catalog"} and str(vsc) in report.failed[0].detail


@pytest.mark.parametrize(("fmt", "options"), [("qcow2", ()), ("vhdx", ("subformat=dynamic",))])
def test_other_image_formats(template: Template, tmp_path: Path, fmt: str, options: tuple[str, ...]) -> None:
    converted = qemu_convert(template.path, tmp_path / f"t.{fmt}", fmt, *options)
    report = verify_template(converted, trusted=[template.key.cert])
    assert report.ok, report.failed
    assert [c.name for c in report.checks] == ALL_CHECKS


def test_a_base_image_is_not_a_template(small_disk: Path, tmp_path: Path) -> None:
    image = writable_copy(small_disk, tmp_path / "base.raw")
    # mtools' mdir cannot list a FAT whose root is empty, so give the ESP what any installer leaves there.
    run("mmd", "-i", f"{image}@@{1024 * 1024}", "::/EFI")
    report = verify_template(image)
    verdicts = {c.name: c.ok for c in report.checks}
    assert verdicts == {"GPT": True, "ESP": True, "UKI": False, "Catalog": False, "LUKS2": False,
                        "Signer": False}  # fmt: skip
    details = {c.name: c.detail for c in report.checks}
    assert "no UKI in \\EFI\\Linux" in details["UKI"]
    assert "no partition holds a LUKS2 container" in details["LUKS2"]


def test_unreadable_input_raises(template: Template, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        verify_template(tmp_path / "missing.raw")
    with pytest.raises(ShieldwrightError, match="cannot read"):
        verify_template(template.path, vsc=tmp_path / "missing.vsc")


def test_cancel(template: Template) -> None:
    token = CancelToken()
    token.cancel()
    with pytest.raises(CancelledError):
        verify_template(template.path, cancel=token)
