"""How engine values read in the GUI: partitions (shared by the layout bar and the table), sizes, KDF costs.

Colours are derived per role from the active palette (a light and a dark variant), so the bar and the
table's colour swatches match and stay readable in both schemes. Colour is never the only cue: the
bar adds glyphs and hatching, the table has text columns.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication
from PySide6.QtGui import QColor, QPalette

from app.disk.model import Partition, Role
from app.luks.kdf import KdfParams

# Hue (0-359) and saturation (0-255) per role; lightness comes from the palette.
_ROLE_HUES: dict[Role, tuple[int, int]] = {
    Role.ESP: (135, 150),
    Role.XBOOTLDR: (175, 150),
    Role.ROOT: (212, 170),
    Role.USR: (250, 140),
    Role.VERITY: (285, 120),
    Role.SWAP: (28, 190),
    Role.HOME: (48, 190),
    Role.DATA: (335, 130),
    Role.OTHER: (210, 25),
}


def _tr(text: str) -> str:
    return QCoreApplication.translate("Partition", text)


def role_label(role: Role) -> str:
    return {
        Role.ESP: _tr("EFI System"),
        Role.XBOOTLDR: _tr("Extended boot loader"),
        Role.ROOT: _tr("Root"),
        Role.USR: _tr("/usr"),
        Role.VERITY: _tr("Verity"),
        Role.SWAP: _tr("Swap"),
        Role.HOME: _tr("Home"),
        Role.DATA: _tr("Data"),
        Role.OTHER: _tr("Other"),
    }[role]


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def role_color(role: Role, palette: QPalette) -> QColor:
    """The fill colour of a partition of ``role`` on ``palette`` (medium on light themes, deep on dark)."""
    hue, sat = _ROLE_HUES.get(role, _ROLE_HUES[Role.OTHER])
    return QColor.fromHsl(hue, sat, 92 if is_dark(palette) else 168)


def free_color(palette: QPalette) -> QColor:
    return QColor.fromHsl(0, 0, 70 if is_dark(palette) else 205)


def contrasting_text(fill: QColor) -> QColor:
    """Black or white, whichever reads better on ``fill`` (WCAG relative luminance)."""

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    lum = 0.2126 * channel(fill.redF()) + 0.7152 * channel(fill.greenF()) + 0.0722 * channel(fill.blueF())
    return QColor(0, 0, 0) if lum > 0.179 else QColor(255, 255, 255)


def human_size(n: int) -> str:
    """``512 B``, ``16 MiB``, ``1.5 GiB``: binary units, one decimal only when it says something."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            text = f"{value:.1f}"
            return f"{text[:-2] if text.endswith('.0') else text} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def describe_kdf(params: KdfParams, iter_time_ms: int) -> str:
    """``argon2id: 4 iterations, 1 GiB, 4 lanes ≈ 2.0 s`` or ``pbkdf2-sha256: 1,234,567 iterations ≈ 2.0 s``.

    The time is the target the parameters were calibrated for (one unlock on this computer).
    """
    seconds = f"≈ {iter_time_ms / 1000:.1f} s"
    if params.type == "pbkdf2":
        return f"pbkdf2-{params.hash}: {params.time:,} iterations {seconds}"
    memory = human_size((params.memory_kib or 0) * 1024)
    return f"{params.type}: {params.time} iterations, {memory}, {params.parallel} lanes {seconds}"


def content_label(p: Partition) -> str:
    if p.encrypted:
        return _tr("%1 (encrypted)").replace("%1", p.content.upper())
    return {"unknown": _tr("unknown"), "empty": _tr("empty"), "fat": "FAT"}.get(p.content, p.content)


def display_name(p: Partition) -> str:
    return p.name or p.type_name


def partition_tooltip(p: Partition, protected: bool | None = None) -> str:
    """Everything worth knowing about ``p`` in a few plain lines."""
    lines = [
        _tr("Partition %1: %2").replace("%1", str(p.number)).replace("%2", p.name or _tr("(no name)")),
        _tr("Type: %1 (%2)").replace("%1", p.type_name).replace("%2", role_label(p.role)),
        _tr("Type GUID: %1").replace("%1", p.type_guid),
        _tr("Partition GUID: %1").replace("%1", p.partition_guid),
        _tr("Size: %1 (%2 bytes), sectors %3-%4")
        .replace("%1", human_size(p.size_bytes))
        .replace("%2", f"{p.size_bytes:,}")
        .replace("%3", str(p.first_lba))
        .replace("%4", str(p.last_lba)),
        _tr("Content: %1").replace("%1", content_label(p)),
    ]
    if protected is not None and p.protectable:
        lines.append(
            _tr("Will be protected (encrypted and catalogued)") if protected else _tr("Not protected")
        )
    elif protected is not None:
        lines.append(_tr("Cannot be protected: the firmware must read it"))
    return "\n".join(lines)


def not_protectable_reason(p: Partition) -> str:
    if p.role is Role.ESP:
        return _tr("The EFI System Partition stays unencrypted: the firmware reads the boot loader from it.")
    return _tr("This partition cannot be protected.")
