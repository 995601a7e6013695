"""Hostile inputs, per parser: only our error types escape, and memory stays under a stated bound.

For each parser (PE/UKI, VHDX, VHD, qcow2, GPT, LUKS2, CMS, recipe TOML) hypothesis edits a small valid
seed made by an independent tool or by our writer: the fields that carry sizes, offsets and counts get
extreme values, random bytes land anywhere, checksums are usually re-sealed so the damage reaches the
deep parsing, and disk files may grow a sparse tail so that what the header claims "fits" a file that
holds almost nothing. Inputs hold at most a few MB of real data.

Every example is parsed in one long-lived child process (:mod:`tests.hostile.worker`): an exception that
is not a :class:`~app.errors.ShieldwrightError` fails the test with the child's traceback, and so does
the child's peak RSS passing :data:`~tests.hostile.measure.PEAK_BOUND_KIB` (256 MiB) or an input taking
longer than :data:`EXAMPLE_TIMEOUT` seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from app.boot.uki import HOST_STUB, UkiInputs, build_uki
from app.disk.crc32c import crc32c
from app.disk.formats import vhd, vhdx
from app.luks.header import build_metadata, read_metadata
from app.signing.cms import sign_cms
from tests.boot.uki_helpers import snakeoil
from tests.conftest import MiB, run
from tests.hostile import samples
from tests.hostile.measure import PEAK_BOUND_KIB, REPO, child_env

#: Seconds one input may take (CPU bound); the slowest seed parses in well under a second.
EXAMPLE_TIMEOUT = 20
SUITE = settings(
    max_examples=int(os.environ.get("SW_HOSTILE_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Values that break size arithmetic: zero, one, sign and width boundaries.
EXTREMES = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x1000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
            0xFFFFFFFF, 2**32, 2**40, 2**44 - 1, 2**62, 2**63 - 1, 2**63, 2**64 - 1)  # fmt: skip
SPARSE_TAILS = (0, 0, 0, 1 << 30, 64 << 30, 1 << 40)
#: Re-seal checksums most of the time, so edits reach the parsing behind them.
MOSTLY = st.sampled_from((True, True, True, False))

Field = tuple[int, int, str]  # offset, width in bytes, "little" | "big"


# --- the worker ------------------------------------------------------------------------------------------


class Worker:
    """One ``python -m tests.hostile.worker`` child, restarted after a timeout."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.hostile.worker"], cwd=REPO, env=child_env(), text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        return self.proc

    def parse(self, parser: str, path: Path) -> dict[str, object]:
        proc = self._start()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps({"parser": parser, "path": str(path)}) + "\n")
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], EXAMPLE_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            return {"outcome": "timeout" if not ready else "crashed", "escaped": True, "peak_kib": 0,
                    "type": "", "detail": f"no answer within {EXAMPLE_TIMEOUT} s"}  # fmt: skip
        return json.loads(line)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


def check(worker: Worker, parser: str, path: Path) -> None:
    answer = worker.parse(parser, path)
    assert not answer["escaped"], f"{answer['outcome']} {answer['type']}:\n{answer['detail']}"
    assert answer["peak_kib"] < PEAK_BOUND_KIB, f"peak {answer['peak_kib'] // 1024} MiB: {answer}"


# --- mutation --------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Seed:
    data: bytes
    fields: tuple[Field, ...]  # where the sizes, offsets and counts are
    reseal: Callable[[bytearray], None] = lambda buf: None

    def __repr__(self) -> str:  # failure reports print fixtures: not megabytes of them
        return f"Seed({len(self.data)} bytes, {len(self.fields)} fields)"


@st.composite
def edits(draw: st.DrawFn, seed: Seed) -> list[tuple[int, bytes]]:
    """1-4 edits: an extreme (or any) value in a known field, or a few random bytes anywhere."""
    out = []
    for _ in range(draw(st.integers(1, 4))):
        if seed.fields and draw(st.integers(0, 3)):
            offset, width, order = draw(st.sampled_from(seed.fields))
            value = draw(st.sampled_from(EXTREMES) | st.integers(0, 2 ** (8 * width) - 1))
            out.append((offset, (value % 2 ** (8 * width)).to_bytes(width, order)))
        else:
            offset = draw(st.integers(0, len(seed.data) - 1))
            out.append((offset, draw(st.binary(min_size=1, max_size=16))))
    return out


def mutate(seed: Seed, changes: list[tuple[int, bytes]], reseal: bool) -> bytes:
    buf = bytearray(seed.data)
    for offset, data in changes:
        buf[offset : offset + len(data)] = data
    del buf[len(seed.data) :]
    if reseal:
        seed.reseal(buf)
    return bytes(buf)


def write(path: Path, data: bytes, sparse_tail: int = 0) -> Path:
    with open(path, "wb") as f:
        f.write(data)
        if sparse_tail:
            f.truncate(len(data) + sparse_tail)
    return path


def fuzz_disk(worker: Worker, tmp: Path, seed: Seed, changes, reseal: bool, tail: int) -> None:
    check(worker, "disk", write(tmp / "input.img", mutate(seed, changes, reseal), tail))


# --- PE / UKI --------------------------------------------------------------------------------------------


def pe_fields(data: bytes) -> tuple[Field, ...]:
    """e_lfanew, section count, optional-header size, SizeOfImage/SizeOfHeaders, directory count, the
    certificate table entry, every section's sizes and offsets, and the first WIN_CERTIFICATE's lengths."""
    (e_lfanew,) = struct.unpack_from("<I", data, 0x3C)
    coff = e_lfanew + 4
    (n_sections,) = struct.unpack_from("<H", data, coff + 2)
    (opt_size,) = struct.unpack_from("<H", data, coff + 16)
    opt = coff + 20
    spots = [(0x3C, 4), (coff + 2, 2), (coff + 16, 2)]
    spots += [(opt + k, 4) for k in (56, 60, 108, 144, 148)]
    table = opt + opt_size
    spots += [(table + 40 * i + k, 4) for i in range(n_sections) for k in (8, 12, 16, 20)]
    fields = [(offset, width, "little") for offset, width in spots]
    (cert_off,) = struct.unpack_from("<I", data, opt + 144)
    if cert_off:
        fields += [(cert_off, 4, "little"), (cert_off + 8 + 1, 1, "big"), (cert_off + 8 + 2, 2, "big")]
    return tuple(fields)


@pytest.fixture(scope="module")
def pe_seeds() -> list[Seed]:
    tiny = samples.tiny_pe([(".osrel", 12, b"ID=tiny\n\0\0\0\0"), (".cmdline", 5, b"quiet"),
                            (".linux", 0x400, samples.fake_bzimage())])  # fmt: skip
    inputs = UkiInputs(linux=samples.fake_bzimage(), cmdline="quiet", os_release="ID=t\n",
                       stub=HOST_STUB.read_bytes())  # fmt: skip
    signed = build_uki(inputs, signer=snakeoil())
    return [Seed(d, pe_fields(d)) for d in (tiny, signed)]


@SUITE
@given(data=st.data())
@example(data=None)
def test_hostile_pe_and_uki(worker: Worker, tmp_path: Path, pe_seeds: list[Seed], data) -> None:
    """inspect_uki + predict_pcr11 + verify_pe on edited UKIs: a tiny one, and a signed one on the host
    stub (its certificate table holds a CMS SignedData, so Authenticode parsing is fuzzed too)."""
    path = tmp_path / "input.efi"
    if data is None:  # the 1.5 KB UKI of the issue, explicitly
        check(worker, "pe", write(path, samples.huge_section_uki(0xF0000000)))
        return
    seed = pe_seeds[data.draw(st.integers(0, len(pe_seeds) - 1))]
    check(worker, "pe", write(path, mutate(seed, data.draw(edits(seed)), False)))


# --- VHDX ------------------------------------------------------------------------------------------------


def _vhdx_reseal(buf: bytearray) -> None:
    for off, size in [(o, vhdx.HEADER_SIZE) for o in vhdx.HEADER_OFFSETS] + [
        (o, vhdx.REGION_TABLE_SIZE) for o in vhdx.REGION_TABLE_OFFSETS
    ]:
        block = bytearray(buf[off : off + size])
        block[4:8] = b"\0\0\0\0"
        struct.pack_into("<I", buf, off + 4, crc32c(block))


def _vhdx_fields(data: bytes) -> tuple[Field, ...]:
    fields: list[Field] = []
    for off in vhdx.HEADER_OFFSETS:
        fields += [(off + 8, 8, "little"), (off + 48, 8, "little"), (off + 66, 2, "little"),
                   (off + 68, 4, "little"), (off + 72, 8, "little")]  # fmt: skip
    for base in vhdx.REGION_TABLE_OFFSETS:
        fields.append((base + 8, 4, "little"))
        for i in range(struct.unpack_from("<I", data, base + 8)[0]):
            fields += [(base + 16 + 32 * i + 16, 8, "little"), (base + 16 + 32 * i + 24, 4, "little")]
    regions = {gid: (off, length) for _, (gid, off, length) in _vhdx_regions(data)}
    meta, _ = regions[vhdx.METADATA_GUID]
    fields.append((meta + 10, 2, "little"))
    for i in range(struct.unpack_from("<H", data, meta + 10)[0]):
        gid, item_off, length, _, _ = vhdx.METADATA_ENTRY.unpack_from(data, meta + 32 + 32 * i)
        fields += [(meta + 32 + 32 * i + 16, 4, "little"), (meta + 32 + 32 * i + 20, 4, "little")]
        fields += [(meta + item_off, min(length, 8), "little")]
    bat, _ = regions[vhdx.BAT_GUID]
    fields += [(bat + 8 * i, 8, "little") for i in range(10)]
    return tuple(fields)


def _vhdx_regions(data: bytes) -> Iterator[tuple[int, tuple[bytes, int, int]]]:
    base = vhdx.REGION_TABLE_OFFSETS[0]
    for i in range(struct.unpack_from("<I", data, base + 8)[0]):
        gid, off, length, _ = vhdx.REGION_ENTRY.unpack_from(data, base + 16 + 32 * i)
        yield i, (gid, off, length)


@pytest.fixture(scope="module")
def vhdx_seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    data = samples.small_vhdx(tmp_path_factory.mktemp("vhdx") / "seed.vhdx").read_bytes()
    return Seed(data, _vhdx_fields(data), _vhdx_reseal)


@SUITE
@given(data=st.data(), reseal=MOSTLY, tail=st.sampled_from(SPARSE_TAILS))
@example(data=None, reseal=True, tail=0)
def test_hostile_vhdx(worker: Worker, tmp_path: Path, vhdx_seed: Seed, data, reseal: bool, tail: int) -> None:
    if data is None:  # the two: a 4 GiB - 1 MiB log, a 64 TiB disk's BAT, both in sparse files
        check(worker, "disk", samples.vhdx_with_huge_log(tmp_path / "log.vhdx", 4 * samples.GiB - MiB))
        check(worker, "disk", samples.vhdx_with_huge_disk(tmp_path / "bat.vhdx", 64 * samples.TiB))
        return
    fuzz_disk(worker, tmp_path, vhdx_seed, data.draw(edits(vhdx_seed)), reseal, tail)


# --- VHD -------------------------------------------------------------------------------------------------


def _vhd_reseal(buf: bytearray) -> None:
    footer = len(buf) - vhd.FOOTER_SIZE
    struct.pack_into(">I", buf, footer + 64, vhd.footer_checksum(bytes(buf[footer:])))


@pytest.fixture(scope="module")
def vhd_seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    path = tmp_path_factory.mktemp("vhd") / "seed.vhd"
    run("qemu-img", "create", "-q", "-f", "vpc", "-o", "subformat=fixed,force_size=on", path, "4M")
    run("qemu-io", "-f", "vpc", "-c", "write -P 0x5a 0 64k", path)
    data = path.read_bytes()
    footer = len(data) - vhd.FOOTER_SIZE
    fields = tuple((footer + k, w, "big") for k, w in ((16, 8), (40, 8), (48, 8), (56, 4), (60, 4)))
    return Seed(data, fields, _vhd_reseal)


@SUITE
@given(data=st.data(), reseal=MOSTLY, tail=st.sampled_from(SPARSE_TAILS))
def test_hostile_vhd(worker: Worker, tmp_path: Path, vhd_seed: Seed, data, reseal: bool, tail: int) -> None:
    fuzz_disk(worker, tmp_path, vhd_seed, data.draw(edits(vhd_seed)), reseal, tail)


# --- qcow2 -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qcow2_seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    path = tmp_path_factory.mktemp("qcow2") / "seed.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", path, "8M")
    run("qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 64k", "-c", "write -z 1M 64k", path)
    data = path.read_bytes()
    fields = [(k, w, "big") for k, w in ((4, 4), (8, 8), (16, 4), (20, 4), (24, 8), (32, 4), (36, 4), (40, 8),
                                         (60, 4), (72, 8), (100, 4))]  # fmt: skip
    l1_off = struct.unpack_from(">Q", data, 40)[0]
    fields += [(l1_off + 8 * i, 8, "big") for i in range(4)]
    l2_off = struct.unpack_from(">Q", data, l1_off)[0] & 0x00FFFFFFFFFFFE00
    fields += [(l2_off + 8 * i, 8, "big") for i in range(16)]
    return Seed(data, tuple(fields))


@SUITE
@given(data=st.data(), tail=st.sampled_from(SPARSE_TAILS))
@example(data=None, tail=0)
def test_hostile_qcow2(worker: Worker, tmp_path: Path, qcow2_seed: Seed, data, tail: int) -> None:
    if data is None:  # a few MiB whose clusters all map one host cluster: 1 TiB of allocated data
        check(worker, "disk", samples.expanding_qcow2(tmp_path / "x.qcow2", 2**40))
        return
    fuzz_disk(worker, tmp_path, qcow2_seed, data.draw(edits(qcow2_seed)), False, tail)


# --- GPT -------------------------------------------------------------------------------------------------


def _gpt_reseal(buf: bytearray) -> None:
    total = len(buf) // 512
    for lba in (1, total - 1):
        at = lba * 512
        hsize, _, _, _, _, _, _, _, elba, count, esize = struct.unpack_from("<IIIQQQQ16sQII", buf, at + 12)
        if 0 < count * esize <= 1 << 20 and elba * 512 + count * esize <= len(buf):
            entries = bytes(buf[elba * 512 : elba * 512 + count * esize])
            struct.pack_into("<I", buf, at + 88, zlib.crc32(entries))
        if 92 <= hsize <= 512:
            struct.pack_into("<I", buf, at + 16, 0)
            struct.pack_into("<I", buf, at + 16, zlib.crc32(bytes(buf[at : at + hsize])))


@pytest.fixture(scope="module")
def gpt_seed(tmp_path_factory: pytest.TempPathFactory) -> Seed:
    path = tmp_path_factory.mktemp("gpt") / "seed.img"
    with open(path, "wb") as f:
        f.truncate(4 * MiB)
    run("sgdisk", "-n", "1:2048:+1M", "-t", "1:ef00", "-c", "1:ESP", "-n", "2:0:0", "-t", "2:8304", path)
    data = path.read_bytes()
    fields: list[Field] = [
        (446 + 16 * i + k, w, "little") for i in range(2) for k, w in ((4, 1), (8, 4), (12, 4))
    ]
    for at in (512, len(data) - 512):
        fields += [(at + k, w, "little") for k, w in ((12, 4), (24, 8), (32, 8), (40, 8), (48, 8), (72, 8),
                                                      (80, 4), (84, 4))]  # fmt: skip
    for i in range(2):
        fields += [(1024 + 128 * i + k, 8, "little") for k in (32, 40)]
    return Seed(data, tuple(fields), _gpt_reseal)


@SUITE
@given(data=st.data(), reseal=MOSTLY, tail=st.sampled_from(SPARSE_TAILS))
def test_hostile_gpt(worker: Worker, tmp_path: Path, gpt_seed: Seed, data, reseal: bool, tail: int) -> None:
    fuzz_disk(worker, tmp_path, gpt_seed, data.draw(edits(gpt_seed)), reseal, tail)


# --- LUKS2 -----------------------------------------------------------------------------------------------

#: JSON values that are valid JSON but hostile LUKS2: huge, negative, wrong types, deep.
JSON_VALUES = st.sampled_from(
    [0, 1, -1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63, 2**64, 2**200, "18446744073709551615", "-5", "1e9",
     "", None, True, [], {}, [[[[[[[[]]]]]]]], "x" * 3000, 1.5, float("inf"), float("nan"), "\u00b2",
     ["\u00b2"], [float("inf")], [24], [-1]]
) | st.integers() | st.text(max_size=20)  # fmt: skip
JSON_PATHS = (
    "keyslots.0.key_size", "keyslots.0.area.offset", "keyslots.0.area.size", "keyslots.0.area.key_size",
    "keyslots.0.area.encryption", "keyslots.0.af.stripes", "keyslots.0.af.hash", "keyslots.0.kdf.iterations",
    "keyslots.0.kdf.hash", "keyslots.0.kdf.type", "keyslots.0.priority", "digests.0.iterations",
    "digests.0.hash", "digests.0.keyslots", "digests.0.segments", "digests.0.salt", "digests.0.digest",
    "segments.0.offset", "segments.0.size", "segments.0.sector_size", "segments.0.encryption",
    "segments.0.iv_tweak", "config.keyslots_size", "config.json_size", "tokens.0", "keyslots.31", "keyslots",
    "tokens.0.keyslots", "tokens.0.tpm2-pcrs", "tokens.0.tpm2-blob", "tokens.0.tpm2-policy-hash",
    "tokens.0.tpm2_srk", "tokens.0.tpm2-pcr-bank",
)  # fmt: skip


def _set_path(obj: dict, dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        obj = obj.setdefault(key, {}) if isinstance(obj.get(key), dict) or key not in obj else obj[key]
        if not isinstance(obj, dict):
            return
    obj[last] = value


def _luks_reseal(buf: bytearray) -> None:
    """Recompute both copies' sha256 checksums after raw edits, at the sizes their headers claim."""
    for at in (0, struct.unpack_from(">Q", buf, 8)[0]):
        if at > len(buf) - 4096:
            continue
        hdr = struct.unpack_from(">Q", buf, at + 8)[0]
        if not 4096 <= hdr <= len(buf) - at:
            continue
        copy = bytearray(buf[at : at + hdr])
        copy[448:512] = bytes(64)
        buf[at + 448 : at + 480] = hashlib.sha256(copy).digest()


@pytest.fixture(scope="module")
def luks_seeds(tmp_path_factory: pytest.TempPathFactory) -> list[Seed]:
    ours = samples.cheap_luks_area(tpm2_token=True)
    path = tmp_path_factory.mktemp("luks") / "seed.img"
    with open(path, "wb") as f:
        f.truncate(4 * MiB)
    options = ["--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
               "--luks2-metadata-size", "16k", "--luks2-keyslots-size", "512k"]  # fmt: skip
    subprocess.run(["cryptsetup", "luksFormat", "-q", *options, "--key-file", "-", str(path)],
                   input=b"hostile", capture_output=True, check=True)  # fmt: skip
    theirs = path.read_bytes()[: 2 * 16384 + 512 * 1024]
    # hdr_size, seqid, hdr_offset of the primary; hdr_size of the secondary
    spots = ((8, 8, "big"), (16, 8, "big"), (256, 8, "big"), (16384 + 8, 8, "big"))
    return [Seed(ours, spots, _luks_reseal), Seed(theirs, spots, _luks_reseal)]


def _json_mutated(area: bytes, changes: list[tuple[str, object]]) -> bytes | None:
    """``area`` with JSON ``changes`` applied and both copies re-sealed; None when our writer refuses."""
    meta = read_metadata(lambda off, n: area[off : off + n])
    for dotted, value in changes:
        _set_path(meta.json, dotted, value)
    try:
        copies = build_metadata(meta)
    except Exception:  # noqa: BLE001 - the mutation does not fit the JSON area: nothing to test
        return None
    return copies + area[len(copies) :]


@SUITE
@given(data=st.data())
@example(data=[("digests.0.iterations", 2**31)])  # a Rust panic in PBKDF2 (OpenSSL takes a C int)
@example(data=[("digests.0.iterations", 2**31 - 1)])  # ten minutes of PBKDF2, not interruptible
@example(data=[("tokens.0.tpm2-pcrs", [float("inf")])])  # an OverflowError in `luks dump`'s token decoding
@example(data=[("tokens.0.tpm2-blob", None)])  # read as the base64 of "None"
def test_hostile_luks2(worker: Worker, tmp_path: Path, luks_seeds: list[Seed], data) -> None:
    """read_header, then unlock when the keyslots are cheap, on headers edited as JSON or as bytes."""
    if isinstance(data, list):
        mutated = _json_mutated(luks_seeds[0].data, data)
    else:
        seed = luks_seeds[data.draw(st.integers(0, len(luks_seeds) - 1))]
        if data.draw(st.booleans()):
            n = data.draw(st.integers(1, 3))
            changes = [(data.draw(st.sampled_from(JSON_PATHS)), data.draw(JSON_VALUES)) for _ in range(n)]
            mutated = _json_mutated(seed.data, changes)
        else:
            mutated = mutate(seed, data.draw(edits(seed)), data.draw(st.booleans()))
    if mutated is not None:
        check(worker, "luks2", write(tmp_path / "header.img", mutated))


# --- CMS -------------------------------------------------------------------------------------------------


def der_length_fields(data: bytes, pos: int = 0, end: int | None = None, depth: int = 0) -> list[Field]:
    """The length octets of every TLV (an independent little DER walker, not the one under test)."""
    end = len(data) if end is None else end
    fields: list[Field] = []
    while pos < end and depth < 20:
        tag, pos = data[pos], pos + 1
        first = data[pos]
        if first < 0x80:
            length, width = first, 1
            fields.append((pos, 1, "big"))
        else:
            width = 1 + (first & 0x7F)
            length = int.from_bytes(data[pos + 1 : pos + width], "big")
            fields.append((pos + 1, width - 1, "big"))
        pos += width
        if tag & 0x20:
            fields += der_length_fields(data, pos, pos + length, depth + 1)
        pos += length
    return fields


@pytest.fixture(scope="module")
def cms_seed() -> Seed:
    data = sign_cms(b"SWVSC1\n" + bytes(64), snakeoil())
    return Seed(data, tuple(der_length_fields(data)))


@SUITE
@given(data=st.data())
@example(data=b"\x30\x80" * 20000)
@example(data=b"\x30\x84\xff\xff\xff\xf0" + bytes(64))
@example(data=b"\x30\x82\x01\x00" * 3000)
def test_hostile_cms(worker: Worker, tmp_path: Path, cms_seed: Seed, data) -> None:
    """verify_cms (parse, then verify without anchors) on edited signatures and deep or lying DER."""
    if not isinstance(data, bytes):
        data = mutate(cms_seed, data.draw(edits(cms_seed)), False)
    check(worker, "cms", write(tmp_path / "input.der", data))


# --- recipe TOML -----------------------------------------------------------------------------------------

RECIPE = textwrap.dedent(
    """\
    format_version = 1
    base_image = "base.raw"
    protect = [3]

    [signing]
    uefi_cert = "db.pem"

    [uki]
    source = "files"
    kernel = "vmlinuz"
    initrds = ["initrd.img"]
    cmdline = "quiet"

    [encryption]
    kdf = "pbkdf2"

    [catalog]
    name = "T"
    version = "1.0.0.0"

    [output]
    path = "out.raw"
    """
)
SNIPPETS = ("[" * 5000 + "]" * 5000, "{a=" * 3000 + "1" + "}" * 3000, "9" * 5000, '"' + "x" * 100_000 + '"',
            "\x00", "\ufeff", "\u202e", "=", "\n[[protect]]\n", "inf", "-0", "1979-05-27T07:32:00Z",
            "'''" + "y" * 1000 + "'''", "\\u0000", "[signing]\n", "a.b.c.d.e.f.g.h = 1\n")  # fmt: skip


@SUITE
@given(data=st.data())
@example(data="a = " + "[" * 100_000 + "]" * 100_000 + "\n")
@example(data="x = " + "{a=" * 50_000 + "1" + "}" * 50_000 + "\n")
@example(data="format_version = " + "9" * 5000 + "\n")
def test_hostile_recipe(worker: Worker, tmp_path: Path, data) -> None:
    """load_recipe + validate_recipe (files not checked) on edited and pathologically nested TOML."""
    if not isinstance(data, str):
        text = RECIPE
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(text)))
            piece = data.draw(st.sampled_from(SNIPPETS) | st.text(max_size=40))
            cut = data.draw(st.integers(0, 20))
            text = text[:at] + piece + text[at + cut :]
        data = text
    write(tmp_path / "recipe.toml", data.encode("utf-8", "surrogatepass"))
    check(worker, "recipe", tmp_path / "recipe.toml")


def test_the_suite_is_measured_in_a_child(worker: Worker, tmp_path: Path) -> None:
    """The bound is real: the worker's peak is that of an interpreter with the engine loaded, far below it,
    and an input a parser refuses comes back as a refusal, not an escape."""
    answer = worker.parse("pe", write(tmp_path / "junk.efi", os.urandom(100)))
    assert answer["outcome"] == "error" and not answer["escaped"] and answer["type"] == "PeFormatError"
    assert 10 * 1024 < answer["peak_kib"] < PEAK_BOUND_KIB
