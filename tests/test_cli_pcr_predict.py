"""``shieldwright pcr predict`` / ``pcr diff`` and the build's ``[pcr]`` policy, without booting.

The values themselves are proved against real boots in tests/measure/test_predict_boots.py (direct UKI)
and tests/boot/test_shim_chain.py (shim); here: the JSON contract, the chain found in the ESP, the events
of a captured real log reused as a profile, and every refusal as one line with exit status 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.boot import vm
from app.measure.chain import parse_fallback_csv
from app.measure.events import MeasureError
from app.template.recipe import PcrOptions
from tests.build_helpers import build, make_keys, make_recipe

pytestmark = pytest.mark.slow

SNAKEOIL_VARS = vm.Firmware.snakeoil().vars_template
MS_VARS = vm.Firmware.microsoft().vars_template
EMPTY_VARS = vm.Firmware.insecure().vars_template
SNAKEOIL_LOG = Path(__file__).parent / "data" / "eventlogs" / "ovmf-snakeoil-uki.bin"
HEX = set("0123456789abcdef")


def shieldwright(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def direct(demo_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A template whose UKI (snakeoil-signed) is also \\EFI\\BOOT\\BOOTX64.EFI, with a [pcr] policy."""
    work = tmp_path_factory.mktemp("direct")
    keys = make_keys(work)
    recipe = make_recipe(demo_image, work / "t.raw", keys, install_removable=True)
    recipe.pcr = PcrOptions(firmware_vars=SNAKEOIL_VARS)
    return build(recipe, keys).output


def test_predict_json_is_the_contract(direct: Path) -> None:
    done = shieldwright("pcr", "predict", direct, "--firmware-vars", SNAKEOIL_VARS, "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc) == {"bank", "pcrs", "events"} and doc["bank"] == "sha256"
    assert set(doc["pcrs"]) == {"4", "7", "11"}
    assert all(len(v) == 64 and set(v) <= HEX for v in doc["pcrs"].values())
    for ev in doc["events"]:
        assert {"pcr", "type", "digest", "description"} <= set(ev) and ev["type"].startswith("EV_")
        assert len(ev["digest"]) == 64 and set(ev["digest"]) <= HEX
    kinds = [(e["pcr"], e["type"]) for e in doc["events"] if e["pcr"] in (4, 7)]
    assert kinds == [
        *[(7, "EV_EFI_VARIABLE_DRIVER_CONFIG")] * 5,
        (7, "EV_SEPARATOR"),
        (4, "EV_EFI_ACTION"),
        (4, "EV_SEPARATOR"),
        (7, "EV_EFI_VARIABLE_AUTHORITY"),
        (4, "EV_EFI_BOOT_SERVICES_APPLICATION"),
    ]


def test_the_manifest_holds_the_same_prediction_and_the_policy(direct: Path) -> None:
    manifest = json.loads(direct.with_name(direct.name + ".manifest.json").read_text())
    done = shieldwright("pcr", "predict", direct, "--firmware-vars", SNAKEOIL_VARS, "--json")
    pcrs = json.loads(done.stdout)["pcrs"]
    predicted = manifest["pcr_predictions"]["sha256"]
    assert (predicted["4"], predicted["7"], predicted["11"][""]) == (pcrs["4"], pcrs["7"], pcrs["11"])
    assert manifest["pcr_policy"]["pcrs"] == [4, 7, 11] and manifest["pcr_policy"]["bank"] == "sha256"
    assert manifest["pcr_policy"]["firmware"] == {
        "kind": "vars",
        "path": str(SNAKEOIL_VARS),
        "secure_boot": True,
    }


def test_a_real_logs_firmware_part_gives_the_same_pcr7_as_the_store(direct: Path) -> None:
    by_vars = shieldwright("pcr", "predict", direct, "--firmware-vars", SNAKEOIL_VARS, "--json")
    by_log = shieldwright("pcr", "predict", direct, "--firmware-log", SNAKEOIL_LOG, "--json")
    assert by_log.returncode == 0, by_log.stderr
    a, b = json.loads(by_vars.stdout), json.loads(by_log.stdout)
    assert a["pcrs"] == b["pcrs"]
    assert [e["digest"] for e in a["events"]] == [e["digest"] for e in b["events"]]


def test_without_a_firmware_profile_the_build_predicts_pcr11_only_and_says_so(
    demo_image: Path, tmp_path: Path
) -> None:
    keys = make_keys(tmp_path)
    result = build(make_recipe(demo_image, tmp_path / "t.raw", keys, install_removable=True), keys)
    manifest = json.loads(result.manifest.read_text())
    assert set(manifest["pcr_predictions"]["sha256"]) == {"11"}
    assert manifest["pcr_policy"]["predicted"] == [11] and manifest["pcr_policy"]["firmware"] is None
    assert any("PCR 4 and 7 are not predicted" in n for n in manifest["notes"])


@pytest.mark.parametrize(
    ("profile", "said"),
    [
        (("--firmware-vars", EMPTY_VARS), "Secure Boot off"),
        (("--firmware-vars", MS_VARS), "nothing in db admits \\EFI\\BOOT\\BOOTX64.EFI"),
        (("--firmware-log", Path(__file__)), "event log"),
    ],
)
def test_unpredictable_is_one_line_and_exit_2(direct: Path, profile: tuple[object, ...], said: str) -> None:
    done = shieldwright("pcr", "predict", direct, *profile)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and said in done.stderr, done.stderr


def test_a_boot_loader_we_cannot_follow_is_refused(demo_image: Path) -> None:
    done = shieldwright("pcr", "predict", demo_image, "--firmware-vars", SNAKEOIL_VARS)
    assert done.returncode == 2 and "systemd-boot" in done.stderr and done.stderr.count("\n") == 1


def test_a_build_whose_chain_cannot_be_predicted_stops_before_writing(
    demo_image: Path, tmp_path: Path
) -> None:
    keys = make_keys(tmp_path)
    recipe = make_recipe(demo_image, tmp_path / "t.raw", keys)  # systemd-boot stays the removable path
    recipe.pcr = PcrOptions(firmware_vars=SNAKEOIL_VARS)
    with pytest.raises(MeasureError, match="systemd-boot"):
        build(recipe, keys)
    assert list(tmp_path.glob("t.raw*")) == []


def test_fallback_csv_gives_the_loader_and_shims_second_stage() -> None:
    csv = "\ufeffshimx64.efi,Web,\\EFI\\Linux\\web.efi ,Shieldwright UKI web\r\n".encode("utf-16-le")
    assert parse_fallback_csv(csv, "x") == ("shimx64.efi", "\\EFI\\Linux\\web.efi")
    with pytest.raises(MeasureError):
        parse_fallback_csv("\ufeffshimx64.efi\r\n".encode("utf-16-le"), "x")


def test_the_planned_prediction_before_the_build_is_the_built_templates(
    demo_image: Path, direct: Path, tmp_path: Path
) -> None:
    """What the PCR Policy page shows before anything is built (the base image's ESP with the planned files
    over it) equals `pcr predict` on the finished template; without a profile, PCR 11 alone."""
    from app.boot.uki import inspect_uki
    from app.disk.esp import read_esp_file
    from app.disk.image import open_image
    from app.disk.layout import layout_of
    from app.template.pcr_policy import predict_planned, the_esp
    from app.template.recipe import BootOptions

    with open_image(direct) as image:
        layout = layout_of(image)
        uki = read_esp_file(image, the_esp(layout), layout.sector_size, "\\EFI\\BOOT\\BOOTX64.EFI")
    with open_image(demo_image) as image:
        base_layout = layout_of(image)
    assert inspect_uki(uki).sections  # the UKI the build installed
    boot = BootOptions(install_removable=True)
    planned = predict_planned(
        demo_image, base_layout, boot, "probe", uki, PcrOptions(firmware_vars=SNAKEOIL_VARS)
    )
    done = shieldwright("pcr", "predict", direct, "--firmware-vars", SNAKEOIL_VARS, "--json")
    doc = json.loads(done.stdout)
    assert {str(n): v for n, v in planned.pcrs["sha256"].items()} == doc["pcrs"]
    assert [e.to_dict("sha256")["digest"] for e in planned.events] == [e["digest"] for e in doc["events"]]

    alone = predict_planned(demo_image, base_layout, boot, "probe", uki, PcrOptions())
    assert alone.predicted_pcrs == (11,) and alone.chain is None
    assert alone.pcrs["sha256"] == {11: doc["pcrs"]["11"]}
    assert {e.pcr for e in alone.events} == {11}
