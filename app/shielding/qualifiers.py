"""Volume ID qualifiers: which templates a piece of shielding data may be used with.

Microsoft's rule (New-VolumeIDQualifier; ../shared/reference/microsoft.md §2): a qualifier names the
catalog's signer, the template's name and a version with a rule — ``equals``, ``greater-than`` or
``greater-or-equal``. A template qualifies when its signed catalog's signer certificate (SHA-256 of its DER)
and name match exactly and its version satisfies the rule; versions compare as four numbers a.b.c.d.
Shielding data applies to a template when any of its qualifiers does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.catalog.extract import extract_catalog
from app.catalog.format import SignedCatalog, check_template_name, parse_version, read_catalog
from app.errors import ShieldwrightError
from app.untrusted import read_bounded

RULES = ("equals", "greater-than", "greater-or-equal")
#: How a verdict says it, for each rule: (when it holds, when it does not).
_RELATION = {
    "equals": ("equals", "does not equal"),
    "greater-than": ("is greater than", "is not greater than"),
    "greater-or-equal": ("is at least", "is below"),
}
#: A .vsc file is a few hundred KiB at most (one digest per block of a few GiB at 1 MiB blocks is ~200 KiB).
MAX_VSC_FILE = 64 * 1024 * 1024


class QualifierError(ShieldwrightError):
    """A qualifier that cannot be made or read."""


@dataclass(frozen=True)
class Qualifier:
    signer_sha256: str
    template_name: str
    version: str
    rule: str = "equals"

    def to_dict(self) -> dict[str, str]:
        return {"signer_sha256": self.signer_sha256, "template_name": self.template_name,
                "version": self.version, "rule": self.rule}  # fmt: skip

    @classmethod
    def from_dict(cls, obj: object) -> Qualifier:
        if not isinstance(obj, dict) or set(obj) != {"signer_sha256", "template_name", "version", "rule"}:
            raise QualifierError(
                "a qualifier must have exactly signer_sha256, template_name, version and rule"
            )
        q = cls(obj["signer_sha256"], obj["template_name"], obj["version"], obj["rule"])
        q.check()
        return q

    def check(self) -> None:
        sha: object = self.signer_sha256  # from a file: any JSON value
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise QualifierError("a qualifier's signer_sha256 is not 64 lower-case hex digits")
        check_template_name(self.template_name)
        parse_version(self.version)
        if self.rule not in RULES:
            raise QualifierError(f"unknown qualifier rule {self.rule!r}", f"use one of {', '.join(RULES)}")

    def describe(self) -> str:
        return f"{self.template_name} {self.rule} {self.version}, signer {self.signer_sha256[:16]}…"

    def verdict(self, catalog: SignedCatalog) -> tuple[bool, str]:
        """(applies, why) for one template's signed catalog."""
        cat = catalog.catalog
        if catalog.signer_fingerprint != self.signer_sha256:
            return False, f"signed by {catalog.signer_fingerprint[:16]}…, not {self.signer_sha256[:16]}…"
        if cat.template_name != self.template_name:
            return False, f"named {cat.template_name!r}, not {self.template_name!r}"
        have, want = parse_version(cat.template_version), parse_version(self.version)
        ok = {"equals": have == want, "greater-than": have > want, "greater-or-equal": have >= want}[
            self.rule
        ]
        holds, fails = _RELATION[self.rule]
        if ok:
            return True, f"{cat.template_name} {cat.template_version} {holds} {self.version}"
        return False, f"version {cat.template_version} {fails} {self.version}"


def load_signed_catalog(source: str | Path) -> SignedCatalog:
    """The signed catalog of a ``.vsc`` file or of a template image (its VHDX metadata, else its ESP); the
    signature is checked (the signer's identity is what a qualifier names, so no trust anchor is needed
    here)."""
    path = Path(source)
    head = read_bounded(path, MAX_VSC_FILE, QualifierError, "give a .vsc file or a template")
    if head[:1] == b"\x30" and len(head) <= MAX_VSC_FILE:  # a DER SEQUENCE: a .vsc
        try:
            return read_catalog(head)
        except ShieldwrightError:
            if path.suffix.lower() == ".vsc":
                raise
    return read_catalog(extract_catalog(path))


def qualifier_from_catalog(signed: SignedCatalog, rule: str = "equals") -> Qualifier:
    """The qualifier that names exactly the template of ``signed`` with ``rule``."""
    cat = signed.catalog
    q = Qualifier(signed.signer_fingerprint, cat.template_name, cat.template_version, rule)
    q.check()
    return q


def qualifier_for(source: str | Path, rule: str = "equals") -> Qualifier:
    """The qualifier that names exactly the template of ``source`` (a .vsc or a template) with ``rule``."""
    return qualifier_from_catalog(load_signed_catalog(source), rule)


def applicability(qualifiers: Sequence[Qualifier], catalog: SignedCatalog) -> tuple[bool, list[str]]:
    """(applicable, one reason per qualifier): applicable when any qualifier applies."""
    verdicts = [q.verdict(catalog) for q in qualifiers]
    return any(ok for ok, _ in verdicts), [why for _, why in verdicts]
