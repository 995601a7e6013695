"""The details of one certificate as ``describe_certificate`` reports them, plus its findings.

Pure presentation: the widget formats a :class:`CertificateInfo`; it never parses a certificate itself.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import QFormLayout, QLabel, QVBoxLayout, QWidget

from app.gui.widgets.elided_label import StatusLine
from app.gui.widgets.findings_list import FindingsList

if TYPE_CHECKING:
    from app.signing.certificates import CertificateInfo

#: Colon-separated bytes per line of a thumbprint (32-byte SHA-256 → two lines that fit a narrow panel).
THUMBPRINT_BYTES_PER_LINE = 16


def thumbprint_hex(value: str | bytes) -> str:
    """``AB:CD:…`` upper-case, whatever separator (or none) the engine used."""
    if isinstance(value, bytes):
        digits = value.hex()
    else:
        digits = "".join(ch for ch in value if ch in "0123456789abcdefABCDEF")
    digits = digits.upper()
    return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))


def format_serial(serial: Any) -> str:
    if isinstance(serial, int):
        digits = f"{serial:X}"
        if len(digits) % 2:
            digits = "0" + digits
        return ":".join(digits[i : i + 2] for i in range(0, len(digits), 2))
    return str(serial)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _names(values: Any) -> str:
    if not values:
        return ""
    if isinstance(values, str):
        return values
    return ", ".join(str(v) for v in values)


class CertificateDetails(QWidget):
    """Subject, issuer, serial, validity, key, SHA-256 thumbprint, KU/EKU, and the findings list."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.info: CertificateInfo | None = None
        self.placeholder = QLabel(self.tr("No certificate loaded yet."), self)
        self.placeholder.setObjectName("certificatePlaceholder")
        self.placeholder.setWordWrap(True)
        self.placeholder.setForegroundRole(QPalette.ColorRole.PlaceholderText)

        self.subject_value = QLabel(self)
        self.issuer_value = QLabel(self)
        # Up to 20 bytes of hex with no place to wrap: elided in the middle, the whole serial in the tooltip.
        self.serial_value = StatusLine(self, elide=Qt.TextElideMode.ElideMiddle)
        self.validity_value = QLabel(self)
        self.key_value = QLabel(self)
        self.sha256_value = QLabel(self)
        self.key_usage_value = QLabel(self)
        self.eku_value = QLabel(self)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        mono.setPointSizeF(self.font().pointSizeF() * 0.92)
        self.sha256_value.setFont(mono)
        self.serial_value.setFont(mono)

        self.form = QFormLayout()
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setHorizontalSpacing(10)
        self.form.setVerticalSpacing(3)
        self.form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        rows = [
            (self.tr("Subject:"), self.subject_value),
            (self.tr("Issuer:"), self.issuer_value),
            (self.tr("Serial:"), self.serial_value),
            (self.tr("Validity:"), self.validity_value),
            (self.tr("Key:"), self.key_value),
            (self.tr("SHA-256:"), self.sha256_value),
            (self.tr("Key usage:"), self.key_usage_value),
            (self.tr("Ext. usage:"), self.eku_value),
        ]
        for caption, value in rows:
            if not isinstance(value, StatusLine):
                value.setWordWrap(True)
            value.setTextFormat(Qt.TextFormat.PlainText)
            value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            label = QLabel(caption, self)
            label.setBuddy(value)
            if not isinstance(value, StatusLine):  # a StatusLine's accessible name is its (whole) text
                value.setAccessibleName(caption.rstrip(":"))
            self.form.addRow(label, value)
        # The thumbprint is what people compare and copy: reachable and selectable with the keyboard too.
        self.sha256_value.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.sha256_value.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.sha256_value.setAccessibleName(self.tr("SHA-256 thumbprint"))
        self.sha256_value.setToolTip(self.tr("SHA-256 thumbprint of the certificate (DER)"))
        self.eku_value.setToolTip(self.tr("Extended key usage"))

        self.findings = FindingsList(self, max_rows=4)
        self.findings.setAccessibleName(self.tr("Certificate findings"))

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.placeholder)
        layout.addLayout(self.form)
        layout.addWidget(self.findings)
        self.set_info(None)

    # -- content --------------------------------------------------------------------------------

    def set_info(
        self, info: CertificateInfo | None, *, now: dt.datetime | None = None, placeholder: str | None = None
    ) -> None:
        """Show ``info`` (None: the placeholder text instead of the form, and no findings)."""
        self.info = info
        shown = info is not None
        self.placeholder.setVisible(not shown)
        if placeholder is not None:
            self.placeholder.setText(placeholder)
        for row in range(self.form.rowCount()):
            self.form.setRowVisible(row, shown)
        self.findings.setVisible(shown)
        if info is None:
            for label in self._values():
                label.clear()
            self.findings.set_findings(None)
            return
        self.subject_value.setText(info.subject)
        self.issuer_value.setText(
            self.tr("Same as subject (self-signed)") if info.self_signed else info.issuer
        )
        self.serial_value.setText(format_serial(info.serial))
        self.validity_value.setText(self.validity_text(info, now))
        moment = _utc(now or dt.datetime.now(dt.UTC))
        font = self.validity_value.font()
        font.setBold(not _utc(info.not_before) <= moment <= _utc(info.not_after))  # the text says it too
        self.validity_value.setFont(font)
        self.key_value.setText(self.key_text(info))
        thumb = thumbprint_hex(info.sha256_fingerprint)
        per_line = THUMBPRINT_BYTES_PER_LINE * 3
        self.sha256_value.setText(
            "\n".join(thumb[i : i + per_line].rstrip(":") for i in range(0, len(thumb), per_line))
        )
        self.key_usage_value.setText(_names(info.key_usage) or self.tr("not restricted"))
        self.eku_value.setText(_names(info.extended_key_usage) or self.tr("not restricted"))
        self.findings.set_findings(info.findings)

    def thumbprint(self) -> str:
        """The SHA-256 thumbprint shown, as one ``AB:CD:…`` string (what a user would compare)."""
        return self.sha256_value.text().replace("\n", ":")

    def _values(self) -> list[QLabel]:
        return [
            self.subject_value,
            self.issuer_value,
            self.serial_value,
            self.validity_value,
            self.key_value,
            self.sha256_value,
            self.key_usage_value,
            self.eku_value,
        ]

    # -- formatting -----------------------------------------------------------------------------

    def validity_text(self, info: CertificateInfo, now: dt.datetime | None = None) -> str:
        now = _utc(now or dt.datetime.now(dt.UTC))
        start, end = _utc(info.not_before), _utc(info.not_after)
        span = self.tr("%1 to %2").replace("%1", f"{start:%Y-%m-%d}").replace("%2", f"{end:%Y-%m-%d}")
        if now > end:
            state = self._days(
                (now - end).days, self.tr("expired less than a day ago"), self.tr("expired 1 day ago"),
                self.tr("expired %1 days ago"),
            )  # fmt: skip
        elif now < start:
            state = self._days(
                (start - now).days, self.tr("not valid yet: starts in less than a day"),
                self.tr("not valid yet: starts in 1 day"), self.tr("not valid yet: starts in %1 days"),
            )  # fmt: skip
        else:
            state = self._days(
                (end - now).days, self.tr("expires in less than a day"), self.tr("valid for 1 more day"),
                self.tr("valid for %1 more days"),
            )  # fmt: skip
        return f"{span} ({state})"

    @staticmethod
    def _days(days: int, zero: str, one: str, many: str) -> str:
        # Explicit singular/plural rather than tr("%n day(s)"): no English translation file is loaded.
        return zero if days == 0 else one if days == 1 else many.replace("%1", str(days))

    def key_text(self, info: CertificateInfo) -> str:
        kind = str(info.key_type or "").lower()
        if kind.startswith("rsa"):
            return self.tr("RSA %1 bits").replace("%1", str(info.key_size))
        if kind.startswith(("ec", "ecdsa")):
            curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(
                str(info.curve), str(info.curve or "")
            )
            return self.tr("ECDSA %1 (%2 bits)").replace("%1", curve).replace("%2", str(info.key_size))
        return f"{info.key_type} {info.key_size or ''}".strip()
