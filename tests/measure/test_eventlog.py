"""Reading TCG crypto-agile event logs (issue 14, "Event logs").

Logs are written here by an independent little writer (``struct.pack`` from the TCG PC Client PFP layout),
expected PCR values are computed here with hashlib, ``tpm2_eventlog`` (tpm2-tools) is a second oracle, and
the real OVMF logs in tests/data/eventlogs must replay to the PCRs their guest's vTPM reported.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

from app.measure.eventlog import MAX_EVENTS, MAX_LOG_SIZE, describe_event, parse_event_log
from app.measure.events import MeasureError

DATA = Path(__file__).resolve().parents[1] / "data" / "eventlogs"
REAL_LOGS = sorted(DATA.glob("*.bin"))

# -- an independent writer (TCG PC Client PFP §10.2) ------------------------------------------------------

ALGS = {"sha1": (0x0004, 20), "sha256": (0x000B, 32), "sha384": (0x000C, 48), "sha512": (0x000D, 64)}
EV_POST_CODE, EV_NO_ACTION, EV_SEPARATOR, EV_ACTION, EV_EVENT_TAG = 0x1, 0x3, 0x4, 0x5, 0x6
EV_S_CRTM_VERSION, EV_IPL = 0x8, 0xD
EV_EFI_VARIABLE_DRIVER_CONFIG, EV_EFI_VARIABLE_BOOT, EV_EFI_BOOT_SERVICES_APPLICATION = (
    0x80000001, 0x80000002, 0x80000003)  # fmt: skip
EV_EFI_GPT_EVENT, EV_EFI_ACTION, EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x80000006, 0x80000007, 0x80000008
EV_EFI_HANDOFF_TABLES, EV_EFI_PLATFORM_FIRMWARE_BLOB2, EV_EFI_HANDOFF_TABLES2 = (
    0x80000009, 0x8000000A, 0x8000000B)  # fmt: skip
EV_EFI_VARIABLE_AUTHORITY = 0x800000E0
GLOBAL = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
SECURITY_DB = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
SHIM_LOCK = uuid.UUID("605dab50-e046-4300-abb6-3dd810dd8b23")
SHA = ("sha1", "sha256")


def spec_id(
    banks: Sequence[str] = SHA,
    *,
    uintn: int = 2,
    count: int | None = None,
    signature: bytes = b"Spec ID Event03\0",
    vendor: bytes = b"",
    algs: Sequence[tuple[int, int]] | None = None,
) -> bytes:
    """The first event: TCG_PCR_EVENT (SHA-1 format) carrying TCG_EfiSpecIDEventStruct."""
    algs = [ALGS[b] for b in banks] if algs is None else algs
    body = signature + struct.pack("<IBBBBI", 0, 0, 2, 0, uintn, len(algs) if count is None else count)
    body += b"".join(struct.pack("<HH", a, s) for a, s in algs) + bytes([len(vendor)]) + vendor
    return struct.pack("<II20sI", 0, EV_NO_ACTION, bytes(20), len(body)) + body


def event(
    pcr: int,
    type_: int,
    data: bytes,
    banks: Sequence[str] = SHA,
    *,
    digests: Mapping[str, bytes] | None = None,
) -> bytes:
    """A TCG_PCR_EVENT2; digests default to H(data) (EV_NO_ACTION: zeros, as firmware writes them)."""
    if digests is None:
        digests = {
            b: bytes(ALGS[b][1]) if type_ == EV_NO_ACTION else hashlib.new(b, data).digest() for b in banks
        }
    out = struct.pack("<III", pcr, type_, len(banks))
    out += b"".join(struct.pack("<H", ALGS[b][0]) + digests[b] for b in banks)
    return out + struct.pack("<I", len(data)) + data


def replay_here(entries: Iterable[tuple[int, int, bytes]], bank: str, pcr0_reset: int = 0) -> dict[int, str]:
    """PCR values by hand: extend H(data) for each (pcr, type, data) that is not EV_NO_ACTION."""
    size = ALGS[bank][1]
    pcrs: dict[int, bytes] = {}
    for pcr, type_, data in entries:
        if type_ == EV_NO_ACTION:
            continue
        reset = bytes(size - 1) + bytes([pcr0_reset]) if pcr == 0 else bytes(size)
        pcrs[pcr] = hashlib.new(bank, pcrs.get(pcr, reset) + hashlib.new(bank, data).digest()).digest()
    return {pcr: v.hex() for pcr, v in sorted(pcrs.items())}


def var_data(name: str, vendor: uuid.UUID, value: bytes) -> bytes:
    """UEFI_VARIABLE_DATA, written from the PFP layout (not with app.measure.events)."""
    return vendor.bytes_le + struct.pack("<QQ", len(name), len(value)) + name.encode("utf-16-le") + value


def image_load(path: str | None, uintn: int = 8) -> bytes:
    """UEFI_IMAGE_LOAD_EVENT with a PciRoot → file path device path (or none)."""
    dp = b""
    if path is not None:
        acpi = struct.pack("<BBHII", 2, 1, 12, 0x0A0341D0, 0)
        name = (path + "\0").encode("utf-16-le")
        dp = acpi + struct.pack("<BBH", 4, 4, 4 + len(name)) + name + struct.pack("<BBH", 0x7F, 0xFF, 4)
    fmt = "<Q" + ("Q" if uintn == 8 else "I") * 3
    return struct.pack(fmt, 0x7E000000, 4096, 0, len(dp)) + dp


SAMPLE = [
    (0, EV_S_CRTM_VERSION, "1.0\0".encode("utf-16-le")),
    (0, EV_EFI_PLATFORM_FIRMWARE_BLOB, struct.pack("<QQ", 0x820000, 0xE0000)),
    (7, EV_EFI_VARIABLE_DRIVER_CONFIG, var_data("SecureBoot", GLOBAL, b"\x01")),
    (7, EV_EFI_VARIABLE_DRIVER_CONFIG, var_data("db", SECURITY_DB, b"cert")),
    (1, EV_EFI_VARIABLE_BOOT, var_data("BootOrder", GLOBAL, b"\x00\x00")),
    (4, EV_EFI_ACTION, b"Calling EFI Application from Boot Option"),
    *[(pcr, EV_SEPARATOR, bytes(4)) for pcr in range(8)],
    (7, EV_EFI_VARIABLE_AUTHORITY, var_data("db", SECURITY_DB, b"owner+cert")),
    (4, EV_EFI_BOOT_SERVICES_APPLICATION, image_load("\\EFI\\BOOT\\BOOTX64.EFI")),
    (11, EV_IPL, ".linux\0".encode("utf-16-le")),
    (11, EV_IPL, b"kernel bytes"),
    (5, EV_EFI_GPT_EVENT, b"EFI PART" + bytes(84) + bytes(8)),  # UEFI_GPT_DATA, no partitions
    (5, EV_EFI_ACTION, b"Exit Boot Services Invocation"),
]


def build(entries: Iterable[tuple[int, int, bytes]], banks: Sequence[str] = SHA, **spec: object) -> bytes:
    return spec_id(banks, **spec) + b"".join(event(p, t, d, banks) for p, t, d in entries)  # type: ignore[arg-type]


# -- replay ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("banks", [("sha256",), ("sha1", "sha256"), ("sha256", "sha384", "sha512")])
def test_replay_matches_a_hand_computed_replay_in_every_bank(banks: tuple[str, ...]) -> None:
    log = parse_event_log(build(SAMPLE, banks))
    assert log.banks == banks
    assert log.spec.startswith("2.0")
    assert [(e.pcr, e.type, e.data) for e in log.events] == SAMPLE
    assert log.replay() == {b: replay_here(SAMPLE, b) for b in banks}


def test_replay_of_chosen_pcrs_includes_untouched_ones_at_their_reset_value() -> None:
    got = parse_event_log(build(SAMPLE)).replay([4, 7, 9])
    assert got["sha256"] == {4: replay_here(SAMPLE, "sha256")[4], 7: replay_here(SAMPLE, "sha256")[7],
                             9: "00" * 32}  # fmt: skip
    assert set(got["sha1"]) == {4, 7, 9}


def test_event_digests_are_the_logged_ones_not_recomputed() -> None:
    """An event's digest need not be H(data) (e.g. an application's Authenticode hash): replay extends it."""
    chosen = {"sha1": b"\x11" * 20, "sha256": b"\x22" * 32}
    log = parse_event_log(
        spec_id() + event(4, EV_EFI_BOOT_SERVICES_APPLICATION, image_load(None), digests=chosen)
    )
    assert log.events[0].digests == chosen
    expected = hashlib.sha256(bytes(32) + b"\x22" * 32).hexdigest()
    assert log.replay()["sha256"] == {4: expected}


@pytest.mark.parametrize("locality", [3, 4])
def test_startup_locality_sets_pcr0_reset_value(locality: int) -> None:
    """PFP §10.4.5.3: after TPM2_Startup at locality 3 (H-CRTM: 4), PCR 0 starts at …03 (…04)."""
    entries = [(0, EV_NO_ACTION, b"StartupLocality\0" + bytes([locality])), *SAMPLE]
    log = parse_event_log(build(entries))
    assert log.startup_locality == locality
    assert log.events[0].type == EV_NO_ACTION and log.events[0].description == f"StartupLocality {locality}"
    for bank in SHA:
        expected = replay_here(SAMPLE, bank, pcr0_reset=locality)
        assert log.replay()[bank] == expected
        assert expected[4] == replay_here(SAMPLE, bank)[4]  # only PCR 0 moves
        assert expected[0] != replay_here(SAMPLE, bank)[0]
    untouched = parse_event_log(build(entries[:1] + SAMPLE[2:3])).replay([0])
    assert untouched["sha256"][0] == "00" * 31 + f"{locality:02x}"


def test_locality_zero_and_other_no_action_events_change_nothing() -> None:
    entries = [
        (0, EV_NO_ACTION, b"StartupLocality\0\0"),
        *SAMPLE[:3],
        (0, EV_NO_ACTION, b"SP800-155 Event\0xx"),
    ]
    log = parse_event_log(build(entries))
    assert log.startup_locality == 0
    assert [e.type for e in log.events].count(EV_NO_ACTION) == 2  # kept, the Spec ID header is not
    assert log.replay() == {b: replay_here(SAMPLE[:3], b) for b in SHA}


def test_trailing_padding_of_a_firmware_log_area_is_not_an_event() -> None:
    for pad in (b"\0" * 300, b"\xff" * 77):
        assert len(parse_event_log(build(SAMPLE) + pad).events) == len(SAMPLE)


# -- tpm2_eventlog as a second oracle -------------------------------------------------------------------

TPM2_EVENTLOG = shutil.which("tpm2_eventlog") or "/usr/bin/tpm2_eventlog"


def tpm2_eventlog_pcrs(path: Path) -> dict[str, dict[int, str]]:
    """The ``pcrs:`` section of ``tpm2_eventlog`` YAML: ``{bank: {pcr: hex}}``."""
    proc = subprocess.run([TPM2_EVENTLOG, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, dict[int, str]] = {}
    bank = ""
    lines = proc.stdout.split("\npcrs:\n", 1)[1].splitlines()
    for line in lines:
        if m := re.fullmatch(r"  (\w+):", line):
            bank = m[1]
            out[bank] = {}
        elif m := re.fullmatch(r"\s+(\d+)\s*:\s*0x([0-9a-fA-F]+)", line):
            out[bank][int(m[1])] = m[2].lower()
    return out


@pytest.mark.parametrize("banks,uintn", [(SHA, 2), (("sha256", "sha384"), 1), (("sha1",), 2)])
def test_replay_agrees_with_tpm2_eventlog(tmp_path: Path, banks: tuple[str, ...], uintn: int) -> None:
    """No EV_NO_ACTION events here: tpm2-tools 5.4 extends their (zero) digests, which the PFP forbids."""
    path = tmp_path / "log.bin"
    path.write_bytes(build(SAMPLE, banks, uintn=uintn))
    theirs = tpm2_eventlog_pcrs(path)
    assert set(theirs) == set(banks)
    assert parse_event_log(path.read_bytes()).replay() == theirs


# -- real logs from OVMF boots ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", REAL_LOGS, ids=[p.stem for p in REAL_LOGS])
def test_real_log_replays_to_the_pcrs_the_vtpm_reported(path: Path) -> None:
    """Done-means item 4: every PCR in the .json beside a captured log, in every bank there."""
    reported = json.loads(path.with_suffix(".json").read_text())
    log = parse_event_log(path.read_bytes())
    replayed = log.replay()
    checked = 0
    for bank, pcrs in reported.items():
        for pcr, value in pcrs.items():
            assert replayed[bank].get(int(pcr), "00" * len(bytes.fromhex(value))) == value.lower(), (
                bank,
                pcr,
            )
            checked += 1
    assert checked >= 2
    assert all(e.description for e in log.events)


@pytest.mark.parametrize("path", REAL_LOGS, ids=[p.stem for p in REAL_LOGS])
def test_real_log_replay_agrees_with_tpm2_eventlog(path: Path) -> None:
    """tpm2-tools 5.4 extends EV_NO_ACTION digests (zeros), which the PFP forbids: the PCRs such events
    name are left out of the comparison (the captured .json checks them instead)."""
    log = parse_event_log(path.read_bytes())
    skewed = {e.pcr for e in log.events if e.type == EV_NO_ACTION}
    theirs = tpm2_eventlog_pcrs(path)
    ours = log.replay()
    assert set(ours) == set(theirs)
    for bank in ours:
        assert {n: v for n, v in ours[bank].items() if n not in skewed} == {
            n: v for n, v in theirs[bank].items() if n not in skewed
        }


# -- descriptions and sources ---------------------------------------------------------------------------


VAR, AUTHORITY, APP = (
    EV_EFI_VARIABLE_DRIVER_CONFIG,
    EV_EFI_VARIABLE_AUTHORITY,
    EV_EFI_BOOT_SERVICES_APPLICATION,
)
BLOB, BLOB2 = EV_EFI_PLATFORM_FIRMWARE_BLOB, EV_EFI_PLATFORM_FIRMWARE_BLOB2
BOOT, TABLES = EV_EFI_VARIABLE_BOOT, EV_EFI_HANDOFF_TABLES
SMBIOS = uuid.UUID("eb9d2d31-2d88-11d3-9a16-0090273fc14d")
LOAD_OPTION = struct.pack("<IH", 1, 0) + "UEFI Disk\0".encode("utf-16-le")  # EFI_LOAD_OPTION, no device path


def describe(type_: int, data: bytes, pcr: int = 0, uintn: int = 8) -> str:
    return describe_event(pcr, type_, data, uintn_size=uintn)


@pytest.mark.parametrize(
    "type_,data,expected",
    [
        (EV_EFI_ACTION, b"Exit Boot Services Invocation", "Exit Boot Services Invocation"),
        (EV_ACTION, b"Start Option ROM Scan\0", "Start Option ROM Scan"),
        (EV_SEPARATOR, bytes(4), "separator"),
        (EV_SEPARATOR, b"\x01\0\0\0", "separator (error)"),
        (VAR, var_data("db", SECURITY_DB, b"x"), "db (EFI image security database)"),
        (VAR, var_data("SecureBoot", GLOBAL, b"\0"), "SecureBoot (EFI global variable): disabled"),
        (AUTHORITY, var_data("SbatLevel", SHIM_LOCK, b"sbat,1\n"), "SbatLevel (shim)"),
        (BOOT, var_data("Boot0003", GLOBAL, LOAD_OPTION), "Boot0003 (EFI global variable): UEFI Disk"),
        (AUTHORITY, var_data("X", uuid.UUID(int=5), b""), f"X ({uuid.UUID(int=5)})"),
        (APP, image_load("\\EFI\\BOOT\\BOOTX64.EFI"), "\\EFI\\BOOT\\BOOTX64.EFI"),
        (APP, image_load(None), "EFI application"),
        (EV_IPL, ".linux\0".encode("utf-16-le"), ".linux"),
        (EV_IPL, b"grub_cmd: linux /vmlinuz\0", "grub_cmd: linux /vmlinuz"),
        (EV_EVENT_TAG, struct.pack("<II", 0x8F3B22EC, 13) + b"Linux initrd\0", "Linux initrd"),
        (EV_EVENT_TAG, struct.pack("<II", 0x12345678, 2) + b"hi", "event tag 0x12345678: hi"),
        (EV_EFI_GPT_EVENT, b"EFI PART" + bytes(84), "GPT"),
        (EV_POST_CODE, b"ACPI DATA", "POST code: ACPI DATA"),
        (EV_S_CRTM_VERSION, "edk2-stable\0".encode("utf-16-le"), "S-CRTM version edk2-stable"),
        (BLOB, struct.pack("<QQ", 0x820000, 4096), "firmware blob, 4096 bytes at 0x820000"),
        (BLOB2, b"\x05DXEFV" + struct.pack("<QQ", 0x900000, 8), "firmware blob DXEFV, 8 bytes at 0x900000"),
        (TABLES, struct.pack("<Q", 1) + SMBIOS.bytes_le + bytes(8), "EFI handoff tables: SMBIOS"),
        (EV_EFI_HANDOFF_TABLES2, b"\x0cSMBIOS TABLE" + bytes(8), "EFI handoff tables: SMBIOS TABLE"),
        (0x1234, b"whatever", "0x00001234"),
        (BLOB2, b"", "EV_EFI_PLATFORM_FIRMWARE_BLOB2"),  # malformed data: the type's name
        (VAR, var_data("db", SECURITY_DB, b"x")[:-3], "EV_EFI_VARIABLE_DRIVER_CONFIG"),
    ],
)  # fmt: skip
def test_descriptions(type_: int, data: bytes, expected: str) -> None:
    assert describe(type_, data) == expected


def test_image_path_with_a_32_bit_uintn_and_split_file_nodes() -> None:
    one = image_load("\\EFI\\BOOT\\BOOTIA32.EFI", uintn=4)
    assert describe(EV_EFI_BOOT_SERVICES_APPLICATION, one, uintn=4) == "\\EFI\\BOOT\\BOOTIA32.EFI"
    names = ("\\EFI\0".encode("utf-16-le"), "x.efi\0".encode("utf-16-le"))
    nodes = b"".join(struct.pack("<BBH", 4, 4, 4 + len(n)) + n for n in names)
    two = struct.pack("<QQQQ", 0, 0, 0, len(nodes)) + nodes
    assert describe(EV_EFI_BOOT_SERVICES_APPLICATION, two) == "\\EFI\\x.efi"


def test_log_strings_are_made_printable() -> None:
    """The log is untrusted: a terminal escape in any decoded string is shown escaped, never emitted."""
    hostile = "\x1b]0;owned\x07\u202e"
    cases = [
        (EV_EFI_ACTION, hostile.encode("latin-1", "ignore") + b"\x9b"),
        (EV_IPL, (hostile + "\0").encode("utf-16-le")),
        (EV_EFI_VARIABLE_BOOT, var_data("Boot" + hostile, GLOBAL, b"")),
        (EV_EFI_BOOT_SERVICES_APPLICATION, image_load(hostile)),
        (EV_S_CRTM_VERSION, hostile.encode("utf-16-le")),
        (EV_EVENT_TAG, struct.pack("<II", 1, 4) + b"\x1b[2J"),
        (EV_EFI_PLATFORM_FIRMWARE_BLOB2, b"\x03\x1b[H" + bytes(16)),
    ]
    for type_, data in cases:
        text = describe(type_, data)
        assert text.isprintable() and "\x1b" not in text, (type_, text)
        assert "\\x1b" in text, (type_, text)


def test_sources_follow_the_documented_rule() -> None:
    entries = [
        (7, EV_EFI_VARIABLE_DRIVER_CONFIG, var_data("db", SECURITY_DB, b"x")),
        (7, EV_EFI_VARIABLE_AUTHORITY, var_data("db", SECURITY_DB, b"shim's signer")),  # before shim runs
        (4, EV_EFI_BOOT_SERVICES_APPLICATION, image_load("\\EFI\\BOOT\\BOOTX64.EFI")),
        (7, EV_EFI_VARIABLE_AUTHORITY, var_data("SbatLevel", SHIM_LOCK, b"sbat,1\n")),
        (7, EV_EFI_VARIABLE_AUTHORITY, var_data("db", SECURITY_DB, b"UKI's signer")),  # shim verifies the UKI
        (14, EV_IPL, b"MokList\0"),
        (4, EV_EFI_BOOT_SERVICES_APPLICATION, image_load("\\EFI\\Linux\\uki.efi")),
        (11, EV_IPL, ".linux\0".encode("utf-16-le")),
        (12, EV_IPL, "console=ttyS0".encode("utf-16-le")),
        (12, EV_EVENT_TAG, struct.pack("<II", 0x49DFFE0F, 0)),
        (9, EV_EVENT_TAG, struct.pack("<II", 0x8F3B22EC, 0)),
        (5, EV_EFI_ACTION, b"Exit Boot Services Invocation"),
    ]
    sources = [e.source for e in parse_event_log(build(entries)).events]
    assert sources == ["firmware", "firmware", "firmware", "shim", "shim", "shim", "firmware", "stub", "stub",
                       "stub", "log", "firmware"]  # fmt: skip


# -- hostile and foreign input ----------------------------------------------------------------------------


def refused(data: bytes, *fragments: str) -> MeasureError:
    with pytest.raises(MeasureError) as info:
        parse_event_log(data)
    err = info.value
    assert "\n" not in err.one_line() and err.hint
    for fragment in fragments:
        assert fragment in err.message, err.message
    return err


def test_a_tcg_1_2_log_is_not_crypto_agile() -> None:
    # TCG 1.2: SHA-1 TCG_PCR_EVENTs only, e.g. starting with the S-CRTM version.
    data = b"1.2\0"
    old = struct.pack("<II20sI", 0, EV_S_CRTM_VERSION, hashlib.sha1(data).digest(), len(data)) + data
    err = refused(old * 3, "not a crypto-agile", "TCG 1.2")
    assert "TPM 2.0 firmware writes the crypto-agile format" in err.hint
    refused(spec_id(signature=b"Spec ID Event00\0"), "not a crypto-agile", "'Spec ID Event00'")
    refused(b"hello, world\n" * 10, "not a crypto-agile")


def test_header_claims_beyond_its_bytes_are_refused_with_their_offset() -> None:
    header_size_at = 28
    body_at = 32
    count_at = body_at + 24
    refused(b"", "byte 0", "empty")
    refused(spec_id()[:31], "byte 0", "too few")
    refused(spec_id()[:-1], f"byte {header_size_at}", "past the end")
    refused(spec_id(count=0xFFFFFFFF), f"byte {count_at}", "4294967295 algorithms")
    refused(spec_id(count=3), f"byte {count_at}", "claims 3 algorithms")
    refused(spec_id(count=0, algs=[]), f"byte {count_at}", "claims 0 algorithms")
    refused(spec_id(algs=[(0x000B, 20)]), f"byte {count_at + 4}", "sha256 has digest size 20")
    refused(spec_id(algs=[(0x000B, 32), (0x000B, 32)]), f"byte {count_at + 8}", "listed twice")
    refused(spec_id(uintn=3), f"byte {body_at + 23}", "uintnSize")


def test_events_inconsistent_with_the_header_are_refused_with_their_offset() -> None:
    head = spec_id()
    at = len(head)
    good = event(4, EV_EFI_ACTION, b"x")
    sha256_only = event(4, EV_EFI_ACTION, b"x", ("sha256",))
    refused(head + sha256_only, f"byte {at + 8}", "1 digests", "2 algorithms")
    refused(head + good.replace(struct.pack("<I", 2), struct.pack("<I", 0xFFFFFFFF), 1), f"byte {at + 8}")
    unknown = good[:12] + struct.pack("<H", 0x0012) + good[14:]  # sm3_256: a real TPM alg, not in this log
    refused(head + unknown, f"byte {at + 12}", "0x0012 is not listed")
    twice = good[:12] + good[12:34] + good[12:34] + good[-5:]
    refused(head + twice, f"byte {at + 34}", "two sha1 digests")
    size_at = len(head) + len(good) - 5
    refused(head + good[:-5] + struct.pack("<I", 0xFFFFFFFF) + b"x", f"byte {size_at}", "4294967295 bytes")
    refused(head + good[:-5] + struct.pack("<I", 2) + b"x", f"byte {size_at}", "past the end")


def test_every_truncation_of_a_valid_log_is_refused_or_a_shorter_log() -> None:
    data = build(SAMPLE)
    ends = [len(spec_id())]
    for p, t, d in SAMPLE:
        ends.append(ends[-1] + len(event(p, t, d)))
    for cut in range(len(data)):
        whole = [e for e in ends if e <= cut]
        tail = data[whole[-1] : cut] if whole else b"?"
        if whole and tail.strip(b"\0") == b"":  # a whole event's end, or zeros after it (padding)
            assert len(parse_event_log(data[:cut]).events) == len(whole) - 1
        else:
            refused(data[:cut], "byte ")


def test_too_many_events_and_too_large_logs_are_refused() -> None:
    tiny = event(8, EV_IPL, b"", ("sha1",))
    refused(spec_id(("sha1",)) + tiny * (MAX_EVENTS + 1), f"more than {MAX_EVENTS} events")
    assert len(parse_event_log(spec_id(("sha1",)) + tiny * 1000).events) == 1000
    with pytest.raises(MeasureError, match="more than the 67108864 bytes"):
        parse_event_log(bytes(MAX_LOG_SIZE + 1))
