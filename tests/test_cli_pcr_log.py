"""``shieldwright pcr log``: the table, ``--json``, ``--pcr`` and one-line errors, through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.measure.test_eventlog import (
    EV_EFI_ACTION,
    EV_IPL,
    EV_NO_ACTION,
    EV_SEPARATOR,
    REAL_LOGS,
    SAMPLE,
    build,
    replay_here,
    spec_id,
)

ROOT = Path(__file__).resolve().parents[1]


def shieldwright(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "app", "pcr", *map(str, args)]
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120
    )


def one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shieldwright: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pcrlog") / "sample.bin"
    path.write_bytes(build([(0, EV_NO_ACTION, b"StartupLocality\0\x03"), *SAMPLE]))
    return path


def test_table_lists_events_then_pcrs_per_bank(sample: Path) -> None:
    proc = shieldwright("log", sample)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["PCR", "TYPE", "SHA256", "DESCRIPTION"]
    action = next(line for line in lines if "EV_EFI_ACTION" in line and "Calling" in line)
    digest = hashlib.sha256(b"Calling EFI Application from Boot Option").hexdigest()
    assert action.split(maxsplit=3) == [
        "4",
        "EV_EFI_ACTION",
        digest,
        "Calling EFI Application from Boot Option",
    ]
    assert any(line.split()[:2] == ["11", "EV_IPL"] and line.endswith(".linux") for line in lines)
    for bank in ("sha256", "sha1"):
        start = lines.index(f"PCRs ({bank}):")
        shown = {}
        for line in lines[start + 1 :]:
            if not line.strip():
                break
            pcr, value = line.split()
            shown[int(pcr)] = value
        assert shown == replay_here(SAMPLE, bank, pcr0_reset=3)
    assert lines.index("PCRs (sha256):") < lines.index("PCRs (sha1):")
    assert any("locality 3" in line for line in lines)


def test_json_shape_and_values(sample: Path) -> None:
    proc = shieldwright("log", sample, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert list(out) == ["pcrs", "events"]
    assert list(out["pcrs"]) == ["sha256", "sha1"]
    for bank in ("sha256", "sha1"):
        assert out["pcrs"][bank] == {str(p): v for p, v in replay_here(SAMPLE, bank, pcr0_reset=3).items()}
    assert len(out["events"]) == len(SAMPLE) + 1
    first, sep = out["events"][0], out["events"][7]
    assert first == {"pcr": 0, "type": "EV_NO_ACTION", "digest": "00" * 32,
                     "description": "StartupLocality 3", "source": "firmware"}  # fmt: skip
    assert sep == {"pcr": 0, "type": "EV_SEPARATOR", "digest": hashlib.sha256(bytes(4)).hexdigest(),
                   "description": "separator", "source": "firmware"}  # fmt: skip


def test_pcr_filter_and_a_log_without_sha256(tmp_path: Path) -> None:
    entries = [(4, EV_EFI_ACTION, b"a"), (7, EV_SEPARATOR, bytes(4)), (11, EV_IPL, b"b")]
    path = tmp_path / "sha1.bin"
    path.write_bytes(build(entries, ("sha1",)))
    out = json.loads(shieldwright("log", path, "--json", "--pcr", "4", "--pcr", "9", "0").stdout)
    assert out["pcrs"] == {"sha1": {"0": "00" * 20, "4": replay_here(entries, "sha1")[4], "9": "00" * 20}}
    assert out["events"] == [{"pcr": 4, "type": "EV_EFI_ACTION", "digest": hashlib.sha1(b"a").hexdigest(),
                              "description": "a", "source": "firmware"}]  # fmt: skip


def test_escapes_from_the_log_are_printed_escaped(tmp_path: Path) -> None:
    path = tmp_path / "hostile.bin"
    path.write_bytes(build([(4, EV_EFI_ACTION, b"\x1b]0;pwned\x07\x1b[2J")]))
    for args in ((), ("--json",)):
        proc = shieldwright("log", path, *args)
        assert proc.returncode == 0 and "\x1b" not in proc.stdout and "\x07" not in proc.stdout
        assert "\\x1b]0;pwned\\x07" in proc.stdout.replace("\\\\", "\\")


def test_unreadable_corrupt_and_foreign_inputs_are_one_line_errors(tmp_path: Path) -> None:
    one_line_error(shieldwright("log", tmp_path / "absent.bin"), "cannot read", "absent.bin")
    truncated = tmp_path / "truncated.bin"
    truncated.write_bytes(build(SAMPLE)[:-3])
    one_line_error(shieldwright("log", truncated), "corrupt event log at byte", "copy /sys/kernel/security")
    foreign = tmp_path / "foreign.bin"
    foreign.write_bytes(b"not an event log at all, just some text\n")
    one_line_error(shieldwright("log", foreign, "--json"), "not a crypto-agile", "TPM 2.0 firmware")
    header_only = tmp_path / "header.bin"
    header_only.write_bytes(spec_id())
    assert json.loads(shieldwright("log", header_only, "--json").stdout) == {
        "pcrs": {"sha256": {}, "sha1": {}}, "events": []}  # fmt: skip


def test_a_pcr_out_of_range_is_a_usage_error(sample: Path) -> None:
    proc = shieldwright("log", sample, "--pcr", "24")
    assert proc.returncode == 2 and "PCR 24" in proc.stderr and "Traceback" not in proc.stderr


def test_the_real_logs_are_there() -> None:
    assert {p.stem for p in REAL_LOGS} >= {"ovmf-snakeoil-uki", "ovmf-ms-shim-uki"}


@pytest.mark.parametrize("path", REAL_LOGS, ids=[p.stem for p in REAL_LOGS])
def test_real_log_json_has_the_pcrs_the_vtpm_reported(path: Path) -> None:
    proc = shieldwright("log", path, "--json")
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(proc.stdout)["pcrs"]
    reported = json.loads(path.with_suffix(".json").read_text())
    for bank, pcrs in reported.items():
        for pcr, value in pcrs.items():
            # a PCR no event extended keeps its reset value (the guest printed every PCR it was asked for)
            assert ours[bank].get(pcr, "0" * len(value)) == value.lower(), (bank, pcr)


def test_help_does_not_load_the_engine() -> None:
    code = ("import sys, contextlib, io\nfrom app.cli import build_parser\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    build_parser().parse_args(['pcr', 'log', '--help'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('app.measure')))\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
