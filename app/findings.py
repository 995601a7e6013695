"""Validation findings: what inspecting an input (a disk image, a certificate, a PE file) found.

Shared by every engine package so the CLI prints and the wizard shows them the same way:
an ERROR blocks the build (and the wizard's Next), a WARNING is shown, INFO is context.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"severity": str(self.severity), "message": self.message}


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity is Severity.ERROR for f in findings)
