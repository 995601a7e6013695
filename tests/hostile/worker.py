"""The child process of the hostile-inputs suite: parse files on request, report the outcome and the peak.

Protocol (one JSON object per line): the parent sends ``{"parser": NAME, "path": FILE}``; the worker runs
that parser on the file and answers ``{"outcome": "ok" | "error", "type": EXCEPTION_CLASS, "escaped": bool,
"detail": TEXT, "peak_kib": VMHWM}``. ``escaped`` is true for anything but a ShieldwrightError - the
finding the suite exists for. The peak is this process's resident high-water mark so far (``VmHWM``: its
own, unlike ``ru_maxrss``, which starts at the forking parent's peak), so a bound on it holds for every
input parsed. Run as ``python -m tests.hostile.worker``.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from app.errors import ShieldwrightError
from tests.hostile.measure import vm_hwm_kib

#: Keyslot costs the worker is willing to pay to try an unlock (the suite tests parsing, not the KDF).
CHEAP_PBKDF2 = 20_000
CHEAP_ARGON2_WORK_KIB = 64 * 1024


def _each(*steps: Callable[[], object]) -> None:
    """Run every step even when an earlier one refuses the input; re-raise the last refusal."""
    refusal: ShieldwrightError | None = None
    for step in steps:
        try:
            step()
        except ShieldwrightError as exc:
            refusal = exc
    if refusal is not None:
        raise refusal


def parse_pe(path: Path) -> None:
    """What ``uki inspect``, ``uki pcr11`` and ``pe verify`` do with a file (without trust anchors)."""
    # lazy: each parser loads only its own modules into the measured child
    from app.boot.pcr import predict_pcr11
    from app.boot.uki import inspect_uki
    from app.signing.authenticode import verify_pe

    data = path.read_bytes()
    _each(
        lambda: verify_pe(data, None),
        lambda: predict_pcr11(inspect_uki(data), banks=("sha256", "sha1"), stub_version="257"),
    )


def parse_disk(path: Path) -> None:
    """What ``inspect`` and the first steps of a build do: open, read the layout, sample the data."""
    # lazy: each parser loads only its own modules into the measured child
    from app.disk.image import open_image
    from app.disk.layout import layout_of

    with open_image(path) as image:
        layout_of(image)
        size = image.virtual_size
        for offset in (0, max(0, size - 65536), size // 2 // 512 * 512):
            image.read(offset, min(65536, size - offset))
        for n, (offset, length) in enumerate(image.allocated_ranges()):
            if n >= 256:
                break
            image.read(offset, min(length, 1 << 20))


def parse_luks2(path: Path) -> None:
    """``luks dump``'s parse and its decoding of systemd-tpm2 tokens, then an unlock attempt when the
    keyslots' KDFs are cheap."""
    # lazy: each parser loads only its own modules into the measured child
    from app.luks.container import read_header, unlock
    from app.tpm.token import TOKEN_TYPE, read_systemd_tpm2_token

    area = path.read_bytes()
    header = read_header(lambda offset, length: area[offset : offset + length])
    for token in header.tokens.values():
        if token.get("type") == TOKEN_TYPE:
            read_systemd_tpm2_token(token)
    for slot in header.keyslots.values():
        kdf = slot.kdf
        if kdf.type == "pbkdf2" and kdf.time > CHEAP_PBKDF2:
            return
        if kdf.type != "pbkdf2" and kdf.time * (kdf.memory_kib or 0) > CHEAP_ARGON2_WORK_KIB:
            return
    unlock(area, b"hostile")  # a wrong passphrase is a ShieldwrightError like any refusal


def parse_cms(path: Path) -> None:
    """A catalog's or shielding data file's signature: parse, then verify without trust anchors."""
    # lazy: each parser loads only its own modules into the measured child
    from app.signing.cms import verify_cms

    verify_cms(path.read_bytes())


def parse_recipe(path: Path) -> None:
    # lazy: each parser loads only its own modules into the measured child
    from app.template.checks import validate_recipe
    from app.template.recipe_file import load_recipe

    validate_recipe(load_recipe(path), check_files=False)


PARSERS: dict[str, Callable[[Path], None]] = {
    "pe": parse_pe,
    "disk": parse_disk,
    "luks2": parse_luks2,
    "cms": parse_cms,
    "recipe": parse_recipe,
}


def handle(request: dict[str, str]) -> dict[str, object]:
    answer: dict[str, object] = {"outcome": "ok", "type": "", "escaped": False, "detail": ""}
    try:
        PARSERS[request["parser"]](Path(request["path"]))
    except ShieldwrightError as exc:
        answer.update(outcome="error", type=type(exc).__name__, detail=exc.one_line()[:300])
    except BaseException as exc:  # noqa: BLE001 - what the suite is looking for, a PanicException included
        answer.update(outcome="error", type=type(exc).__name__, escaped=True,
                      detail="".join(traceback.format_exception(exc))[-3000:])  # fmt: skip
    answer["peak_kib"] = vm_hwm_kib()
    return answer


def main() -> None:
    sys.setrecursionlimit(1000)  # the interpreter's default, whatever the parent runs with
    for line in sys.stdin:
        sys.stdout.write(json.dumps(handle(json.loads(line))) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
