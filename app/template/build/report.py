"""The human-readable build report: one self-contained HTML file rendered from the manifest document.

Rendered from the manifest, it says exactly what the signed manifest says. Inline CSS, no scripts or
external assets; every text from the manifest is HTML-escaped. The disk layout is drawn as GParted
draws it: one bar per disk, partitions as wide as their share, coloured by role, encrypted ones hatched.
"""

from __future__ import annotations

from collections.abc import Collection
from html import escape
from typing import Any

#: Segment colours by partition role (the wizard's layout bar uses the same families).
ROLE_COLOURS = {
    "esp": "#4c8bf5",
    "xbootldr": "#8e6fd8",
    "root": "#2e9d5b",
    "usr": "#3fb8a6",
    "verity": "#a0a0a0",
    "swap": "#e0a030",
    "home": "#d26a9a",
    "data": "#6b9bd1",
    "other": "#9aa5b1",
}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 70em;
       color: #1f2328; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #d0d7de; }
.sub { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: 0.6em 0 1em; font-size: 0.92em; }
th, td { text-align: left; padding: 0.3em 0.6em; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { background: #f6f8fa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .hash { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.9em;
               word-break: break-all; }
.bar { display: flex; height: 2.4em; border: 1px solid #8c959f; border-radius: 4px; overflow: hidden;
       background: #eaeef2; margin: 0.4em 0; }
.seg { min-width: 3px; box-sizing: border-box; border-right: 1px solid #fff; color: #fff; font-size: 0.8em;
       overflow: hidden; white-space: nowrap; padding: 0.55em 0.3em; text-shadow: 0 0 2px #000; }
.gap { background: #eaeef2; }
.enc { background-image: repeating-linear-gradient(45deg, rgba(0,0,0,.28) 0 4px, transparent 4px 9px); }
.legend span { display: inline-block; margin-right: 1.2em; font-size: 0.85em; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; vertical-align: -0.1em; margin-right: 0.3em;
          border-radius: 2px; }
.ok { color: #1a7f37; } .note { color: #9a6700; }
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def human_size(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _bar(parts: list[dict[str, Any]], disk_size: int, sector: int) -> str:
    """A proportional layout bar: partitions in disk order, unallocated gaps between them."""
    segs: list[str] = []
    pos = 0
    for p in sorted(parts, key=lambda q: q["first_lba"]):
        start = p["first_lba"] * sector
        if start > pos:
            segs.append(f'<div class="seg gap" style="width:{100 * (start - pos) / disk_size:.4f}%"></div>')
        colour = ROLE_COLOURS.get(p.get("role", "other"), ROLE_COLOURS["other"])
        enc = " enc" if p.get("content") in ("luks1", "luks2") else ""
        label = f"{p['number']}: {p.get('name') or p.get('role')}"
        title = (
            f"partition {p['number']} {p.get('name', '')} - {p.get('role')}, {p.get('content')}, "
            + human_size(p["size_bytes"])
        )
        width = 100 * p["size_bytes"] / disk_size
        segs.append(
            f'<div class="seg{enc}" style="width:{width:.4f}%;background-color:{colour}"'
            f' title="{_e(title)}">{_e(label)}</div>'
        )
        pos = start + p["size_bytes"]
    if pos < disk_size:
        segs.append(f'<div class="seg gap" style="width:{100 * (disk_size - pos) / disk_size:.4f}%"></div>')
    return f'<div class="bar" role="img" aria-label="disk layout">{"".join(segs)}</div>'


def _table(headers: list[str], rows: list[list[str]], numeric: Collection[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{cell}</td>" for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _layout_section(title: str, parts: list[dict[str, Any]], disk_size: int, sector: int, after: bool) -> str:
    headers = ["#", "Name", "Role", "Type", "Content", "First LBA", "Last LBA", "Size"]
    if after:
        headers.append("Protection")
    rows = []
    for p in sorted(parts, key=lambda q: q["number"]):
        fields = (p["number"], p.get("name"), p.get("role"), p.get("type_name"), p.get("content"),
                  p["first_lba"], p["last_lba"], human_size(p["size_bytes"]))  # fmt: skip
        row = [_e(v) for v in fields]
        if after:
            row.append(_e(p.get("protection")))
        rows.append(row)
    return (
        f"<h3>{_e(title)} <span class=sub>({_e(human_size(disk_size))})</span></h3>"
        + _bar(parts, disk_size, sector)
        + _table(headers, rows, {0, 5, 6, 7})
    )


def _legend() -> str:
    items = "".join(
        f'<span><i class="swatch" style="background:{c}"></i>{_e(role)}</span>'
        for role, c in ROLE_COLOURS.items()
    )
    encrypted = '<span><i class="swatch enc" style="background:#9aa5b1"></i>encrypted (LUKS2)</span>'
    return f'<p class="legend">{items}{encrypted}</p>'


def render_report(doc: dict[str, Any], artefacts: list[tuple[str, str, int, str]]) -> str:
    """The report for manifest ``doc``; ``artefacts`` are (what, file name, size, sha256) rows."""
    tpl, inp, out = doc["template"], doc["input"], doc["output"]
    parts, uki, cat = doc["partitions"], doc["uki"], doc["catalog"]
    title = f"Template {tpl['name']} {tpl['version']}"
    html = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)} - Shieldwright build report</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="sub">Built {_e(doc["created"])} by {_e(doc["tool"]["name"])} '
        f"{_e(doc['tool']['version'])} from <code>{_e(inp['path'])}</code> ({_e(inp['format'])}). "
        f"Output <code>{_e(out['path'])}</code> ({_e(out['format'])}).</p>",
        "<h2>Disk layout</h2>",
        _legend(),
        _layout_section("Before", parts["before"], inp["virtual_size"], inp.get("sector_size") or 512, False),
        _layout_section("After", parts["after"], out["virtual_size"], inp.get("sector_size") or 512, True),
        "<h2>Artefacts</h2>",
        _table(
            ["What", "File", "Size", "SHA-256"],
            [
                [_e(w), f"<code>{_e(n)}</code>", _e(human_size(s)), f'<span class="hash">{_e(h)}</span>']
                for w, n, s, h in artefacts
            ],
            {2},
        ),  # fmt: skip
        f"<p>Input <code>{_e(inp['path'])}</code> SHA-256 <span class=hash>{_e(inp['sha256'])}</span> "
        f"(unchanged: it was only read).</p>",
        "<h2>Unified kernel image</h2>",
        _table(
            ["Field", "Value"],
            [
                ["ESP paths", "<br>".join(f"<code>{_e(p)}</code>" for p in uki["esp_paths"])],
                ["SHA-256", f'<span class="hash">{_e(uki["sha256"])}</span>'],
                ["Authenticode SHA-256", f'<span class="hash">{_e(uki["authenticode_sha256"])}</span>'],
                ["Size", _e(human_size(uki["size_bytes"]))],
                ["Stub", _e(uki["stub"])],
                ["Kernel", f"{_e(uki['kernel'])} ({_e(uki['uname'])})"],
                ["Initrds", "<br>".join(_e(i) for i in uki["initrds"]) or "none"],
                ["Command line", f"<code>{_e(uki['cmdline'])}</code>"],
                ["os-release", _e(uki["os_release"])],
                ["How", _e(f"{uki['action']} ({uki['source']})")],
            ],
        ),  # fmt: skip
        _host_files_section(doc.get("host_files") or []),
        "<h2>PCR predictions</h2>",
        "<p>The values a TPM will hold when this UKI has booted: PCR 4 (boot applications) and 7 (Secure "
        "Boot) on the target firmware when one was given; PCR 11 at phase <code>(kernel start)</code> is "
        "what an initrd without systemd sees, the others follow each systemd boot phase.</p>",
        _table(
            ["Bank", "PCR", "Phase", "Value"],
            [
                [_e(bank), _e(pcr), _e(phase or "(kernel start)"), f'<span class="hash">{_e(value)}</span>']
                for bank, pcrs in doc["pcr_predictions"].items()
                for pcr, phases in pcrs.items()
                for phase, value in (phases.items() if isinstance(phases, dict) else [("", phases)])
            ],
        ),  # fmt: skip
        "<h2>Volume signature catalog</h2>",
        f"<p><code>{_e(cat['path'])}</code> (also in the ESP as <code>{_e(cat['esp_path'])}</code>), "
        f"{_e(human_size(cat['block_size']))} blocks, {_e(cat['hash'])}.</p>",
        _table(
            ["Partition", "Blocks", "Size", "Digest"],
            [
                [
                    _e(p["number"]),
                    _e(p["block_count"]),
                    _e(human_size(p["size_bytes"])),
                    f'<span class="hash">{_e(p["digest"])}</span>',
                ]
                for p in cat["partitions"]
            ],
            {0, 1, 2},
        ),  # fmt: skip
        "<h2>Signers</h2>",
        _table(
            ["Role", "Subject", "Issuer", "Serial", "SHA-256 thumbprint"],
            [
                [
                    _e(role),
                    _e(s["subject"]),
                    _e(s["issuer"]),
                    f"<code>{_e(s['serial'])}</code>",
                    f'<span class="hash">{_e(s["sha256_fingerprint"])}</span>',
                ]
                for role, s in (
                    ("UEFI (UKI)", doc["signers"]["uefi"]),
                    ("Catalog and manifest", doc["signers"]["catalog"]),
                )
            ],
        ),  # fmt: skip
        "<h2>Encryption</h2>",
        _table(
            ["Partition", "LUKS2 UUID", "Cipher", "Sector", "Keyslots"],
            [
                [
                    _e(lk["partition"]),
                    f"<code>{_e(lk['uuid'])}</code>",
                    _e(f"{lk['cipher']} ({lk['key_bits']} bit)"),
                    _e(lk["sector_size"]),
                    "<br>".join(
                        _e(f"{k['id']}: {k['kind']} ({_kdf_text(k['kdf'])})") for k in lk["keyslots"]
                    ),
                ]
                for lk in doc["luks"]
            ],
            {0, 3},
        ),  # fmt: skip
    ]
    if doc.get("notes"):
        html.append(
            "<h2>Notes</h2><ul>" + "".join(f'<li class="note">{_e(n)}</li>' for n in doc["notes"]) + "</ul>"
        )
    html.append(
        "<p class=sub>The manifest beside this file is signed by the catalog signer "
        "(detached CMS, <code>.manifest.json.p7s</code>); this report is a rendering of it.</p>"
    )
    html.append("</body></html>\n")
    return "\n".join(html)


def _host_files_section(files: list[dict[str, Any]]) -> str:
    """The host files published in the clear (in the UKI, in the unencrypted ESP), private ones marked."""
    if not files:
        return "<h3>Host files in the clear</h3><p>None: nothing in the template came from the host.</p>"
    rows = [
        [_e(f.get("role")), f"<code>{_e(f.get('path'))}</code>", _e(f.get("key")), _e(f.get("mode")),
         ('<span class="note">private to the build host, published because allowed</span>'
          if f.get("private") else "readable by every user"),
         _e(human_size(int(f.get("size_bytes") or 0))), f'<span class="hash">{_e(f.get("sha256"))}</span>']
        for f in files
    ]  # fmt: skip
    return (
        "<h3>Host files in the clear</h3><p>These files of the build host are inside the UKI, which the "
        "template's ESP holds unencrypted: anyone with the template can read them.</p>"
        + _table(["Role", "Path", "Recipe key", "Mode", "Access on the host", "Size", "SHA-256"], rows, {5})
    )


def _kdf_text(kdf: dict[str, Any]) -> str:
    if kdf.get("type") == "pbkdf2":
        return f"pbkdf2-{kdf.get('hash')}, {kdf.get('iterations')} iterations"
    return (
        f"{kdf.get('type')}, time {kdf.get('time')}, {kdf.get('memory_kib')} KiB, {kdf.get('parallel')} lanes"
    )
