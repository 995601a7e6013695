"""Shielding Data wizard, page 5: everything chosen, in plain words, before the file is written.

Nothing secret is shown: the payload is named by its items (as the file's clear header names them), never
by its values. This is the commit page: *Generate* signs, encrypts and writes.
"""

from __future__ import annotations

from PySide6.QtWidgets import QPlainTextEdit, QWidget, QWizard

from app.gui.shielding_state import ShieldingState, wipe_payload
from app.gui.tasks import TaskRunner
from app.gui.widgets.status_note import NoteLabel
from wizard_pages.shielding_common import ShieldingPage

POLICY_WORDS = {
    "shielded": "Shielded: the fabric runs the VM shielded, with no admin console or debugging",
    "encryption-supported": (
        "Encryption supported: disks and vTPM encrypted, fabric admins keep console access"
    ),
}


class ShieldingReviewPage(ShieldingPage):
    """A plain-words summary of the shielding data about to be written."""

    def __init__(self, state: ShieldingState, runner: TaskRunner, parent: QWidget | None = None) -> None:
        super().__init__(state, runner, parent)
        self.setTitle(self.tr("Review"))
        self.setSubTitle(
            self.tr(
                "Check what the shielding data will say. Generate signs it with the owner's key and encrypts "
                "the specialization values to the owner and the guardians."
            )
        )
        self.setCommitPage(True)
        self.setButtonText(QWizard.WizardButton.CommitButton, self.tr("&Generate"))
        self.summary = QPlainTextEdit(self)
        self.summary.setObjectName("shieldingSummary")
        self.summary.setReadOnly(True)
        self.summary.setAccessibleName(self.tr("Summary"))
        note = NoteLabel(self, text=self.tr(
            "The header (policy, owner, guardians, qualifiers and the names of the values) is readable by "
            "anyone who has the file; the values themselves are not."))  # fmt: skip
        layout = self.body_layout()
        layout.addWidget(self.summary, 1)
        layout.addWidget(note)
        layout.addWidget(self.error_panel)

    def initializePage(self) -> None:
        self.summary.setPlainText("\n".join(self.lines()))

    def lines(self) -> list[str]:
        state = self.state
        tr = self.tr
        out = [tr("File: %1").replace("%1", str(state.output))]
        if state.overwrite:
            out.append(tr("  (the existing file is replaced once the new one is complete)"))
        out.append(tr("Policy: %1").replace("%1", tr(POLICY_WORDS.get(state.policy, state.policy))))
        owner = state.guardian(state.owner)
        if owner is not None:
            out += ["", tr("Signed by the owner %1").replace("%1", owner.name)]
            if owner.signing_cert is not None:
                out.append(f"  {owner.signing_cert.subject.rfc4514_string()}")
                out.append(tr("  signing certificate SHA-256 %1").replace("%1", owner.signing_sha256 or ""))
        guardians = state.chosen_guardians()
        out += ["", tr("Can be opened by the owner and %1 guardian(s):").replace("%1", str(len(guardians)))]
        out += [f"  {g.name}: {g.subject} (SHA-256 {g.encryption_sha256[:16]}…)" for g in guardians]
        out += ["", tr("For templates (any of):")]
        for entry in state.qualifiers:
            q = entry.qualifier
            out.append(
                tr("  %1, version %2 %3, catalog signed by %4 (SHA-256 %5…)")
                .replace("%1", q.template_name)
                .replace("%2", tr(q.rule.replace("-", " ")))
                .replace("%3", q.version)
                .replace("%4", entry.signer_subject)
                .replace("%5", q.signer_sha256[:16])
            )
        payload = state.payload()
        try:
            items = payload.items()
        finally:
            wipe_payload(payload)
        out += ["", tr("Encrypted values (names only):"), "  " + ", ".join(items)]
        return out
