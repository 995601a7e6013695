"""Wizard page: Review — everything the build will do, and the commit point (Microsoft's *Review Settings*).

The page shows, grouped by step, what *Generate* will do with the choices made so far: the base image and
its layout (only read), the signing certificates (subject + SHA-256 thumbprint), the UKI (kernel, command
line, signer, the PCR 11 value before any systemd phase), the LUKS2 encryption (partitions, cipher, sector
size, KDF cost, recovery key yes/no — never the passphrase), the catalog (name, version, block size) and
the output (path and format, *Change…*). The wizard state becomes a :class:`app.template.recipe.Recipe`
(``recipe_from_wizard_state``), which ``validate_recipe`` checks in the app's executor; an ERROR finding
keeps *Generate* disabled.

*Save recipe…* writes that recipe as TOML (``save_recipe``): paths and choices, never a secret — the
provisioning passphrase is recorded as ``"prompt"`` unless the user names a file for replays. An existing
file is replaced only after the page asked, inline (*Replace* / *Keep it*), never in a modal dialog.

Host files that go into the template in the clear (a UKI built from files: its kernel, initrds and stub,
which land unencrypted in the ESP) are listed in the summary. One that other users of this computer may
not read (``/etc/shadow``, a private key) is an ERROR unless *Publish private host files* is ticked; that
choice is the wizard field ``allowPrivateInputs``, which the Generate page hands to the build.
*Show equivalent command* gives the ``shieldwright build`` command line that replays it. It is a commit
page (``setCommitPage``): its button says *Generate*, and there is no way back once the build started.
"""

from __future__ import annotations

import functools
import html
import logging
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QStyle,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from app.errors import ShieldwrightError
from app.findings import Finding, Severity, has_errors
from app.gui.presentation import display_name, human_size
from app.gui.state import OUTPUT_FORMATS, OutputChoice, WizardState
from app.gui.tasks import BackgroundTask, TaskRunner
from app.gui.widgets.certificate_details import thumbprint_hex
from app.gui.widgets.error_panel import ErrorPanel
from app.gui.widgets.findings_list import FindingsList
from wizard_pages.boot_image import ElidedLabel

if TYPE_CHECKING:
    from app.gui.state import SigningChoice

log = logging.getLogger(__name__)

#: File name extension of each output format.
FORMAT_EXTENSIONS = {"raw": "raw", "vhdx": "vhdx", "vhd": "vhd", "qcow2": "qcow2"}
_SUFFIX_FORMATS = {".raw": "raw", ".img": "raw", ".vhdx": "vhdx", ".vhd": "vhd", ".qcow2": "qcow2"}
RECIPE_FILTERS = ("Shieldwright recipes (*.toml)", "All files (*)")
PASSPHRASE_FILTERS = ("All files (*)",)
#: The wizard field (QWizard.field) holding "publish private host files"; the Generate page reads it.
ALLOW_PRIVATE_FIELD = "allowPrivateInputs"
#: How the wizard allows a private host file (the hint of its ERROR finding).
PRIVATE_HINT = 'use another file, or tick "Publish private host files" below if it is meant to be public'
#: The PCR bank and phase shown on the page: SHA-256, before any systemd phase word is measured.
PCR_BANK = "sha256"


def format_label(fmt: str) -> str:
    return {
        "raw": "Raw disk image (.raw)",
        "vhdx": "VHDX (.vhdx)",
        "vhd": "Fixed VHD (.vhd)",
        "qcow2": "QCOW2 (.qcow2)",
    }.get(fmt, fmt)


def safe_stem(name: str, version: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.") or "template"
    return f"{stem}-{version}" if version else stem


def default_output_path(state: WizardState, fmt: str = "raw") -> Path | None:
    """``<template-name>-<version>.<ext>`` next to the base image (None without a base image)."""
    if state.image_path is None:
        return None
    catalog = state.catalog
    name = catalog.template_name if catalog is not None else ""
    version = catalog.template_version if catalog is not None else ""
    return state.image_path.parent / f"{safe_stem(name, version)}.{FORMAT_EXTENSIONS.get(fmt, fmt)}"


def with_format_suffix(path: Path, fmt: str) -> Path:
    """``path`` with the extension of ``fmt`` when it has a known image extension (else unchanged)."""
    if path.suffix.lower() in _SUFFIX_FORMATS:
        return path.with_suffix("." + FORMAT_EXTENSIONS[fmt])
    return path


def format_for_path(path: Path) -> str | None:
    return _SUFFIX_FORMATS.get(path.suffix.lower())


def artifact_paths(output: Path) -> dict[str, Path]:
    """What a build writes beside the template (the pipeline's naming), by role."""
    try:
        from app.template.pipeline import (
            artifact_paths as engine_paths,  # the engine's own naming when it has one
        )

        return dict(engine_paths(output))
    except ImportError:
        pass
    return {
        "template": output,
        "catalog": output.with_name(output.name + ".vsc"),
        "manifest": output.with_name(output.name + ".manifest.json"),
        "manifest_signature": output.with_name(output.name + ".manifest.json.p7s"),
        "report": output.with_name(output.name + ".report.html"),
    }


# -- engine calls (run in the executor) -----------------------------------------------------------


def recipe_for(state: WizardState) -> Any:
    """The wizard's choices as a Recipe (GUI thread: a pure conversion, no I/O)."""
    from app.gui.recipe_bridge import recipe_from_wizard_state

    return recipe_from_wizard_state(state)


@dataclass(frozen=True)
class ReviewCheck:
    """What the background check found: the recipe's findings, and PCR 11 of the UKI built so far."""

    findings: list[Finding]
    #: PCR 11 (SHA-256) after the UKI's stub ran, before any systemd phase; None when unknown.
    pcr11: str | None = None
    #: Why PCR 11 is not shown (no UKI yet, cannot be predicted).
    pcr_note: str = ""
    generation: int = field(default=0, compare=False)
    #: Host files published in the clear whose mode is private (their paths as text).
    private_files: tuple[str, ...] = ()


def check_recipe(
    recipe: Any, uki: bytes | None, generation: int = 0, allow_private: bool = False
) -> ReviewCheck:
    """Runs in the executor: validate the recipe (it may look at files), look at the modes of the host files
    it publishes (an ERROR for a private one unless ``allow_private``) and predict PCR 11."""
    from app.template.checks import private_host_file_problems, private_host_files
    from app.template.recipe import validate_recipe

    findings = list(validate_recipe(recipe))
    private_problems = private_host_file_problems(recipe, allow=allow_private, hint=PRIVATE_HINT)
    findings += [p.finding() for p in private_problems]
    private = tuple(str(f.path) for f, _ in private_host_files(recipe))
    pcr11, note = None, ""
    if uki is None:
        note = "build the UKI on the Boot image page to see it"
    else:
        from app.boot import pcr

        try:
            pcr11 = pcr.predict_pcr11(uki, banks=(PCR_BANK,))[PCR_BANK][""]
        except ShieldwrightError as exc:
            note = exc.one_line()
    return ReviewCheck(findings, pcr11, note, generation, private)


def save_recipe_file(recipe: Any, path: str, overwrite: bool = False) -> Path:
    """Runs in the executor: write the recipe TOML. ``overwrite`` only once the user said *Replace*; else an
    existing file (even one that appeared since the page asked) is an OutputExistsError, never replaced."""
    from app.template.recipe import save_recipe

    target = Path(path)
    save_recipe(recipe, target, overwrite=overwrite)
    return target


# -- the equivalent command ------------------------------------------------------------------------


def recipe_command(recipe_path: Path, output: Path | None = None) -> str:
    """``shieldwright build RECIPE`` (the recipe holds every choice, the output path too)."""
    return shlex.join(["shieldwright", "build", str(recipe_path)])


def flags_command(state: WizardState) -> str:
    """The common choices as ``shieldwright build`` flags (``Protect-TemplateDisk`` style).

    The flags cannot express everything (the kernel chosen in the image, os-release, KDF cost, sector and
    block sizes); those take the CLI's defaults. The saved recipe replays every choice.
    """
    argv = ["shieldwright", "build"]
    if state.image_path is not None:
        argv += ["--base", str(state.image_path)]
    for number in sorted(state.protected):
        argv += ["--protect", str(number)]
    if state.catalog is not None:
        argv += ["--name", state.catalog.template_name, "--version", state.catalog.template_version]
    if state.uefi_signing is not None:
        argv += ["--uefi-cert", str(state.uefi_signing.cert_path)]
        if state.uefi_signing.key_path is not None:
            argv += ["--uefi-key", str(state.uefi_signing.key_path)]
    if not state.catalog_same_as_uefi and state.catalog_signing is not None:
        argv += ["--catalog-cert", str(state.catalog_signing.cert_path)]
        if state.catalog_signing.key_path is not None:
            argv += ["--catalog-key", str(state.catalog_signing.key_path)]
    enc = state.encryption
    if enc is not None and enc.passphrase_file is not None:
        argv += ["--passphrase-file", str(enc.passphrase_file)]
    if state.boot.configured and state.boot.builds_new_uki and state.boot.cmdline:
        argv += ["--cmdline", state.boot.cmdline]
    output = state.output
    if output is not None:
        argv += ["--format", output.format]
        if output.path is not None:
            argv += ["-o", str(output.path)]
    return shlex.join(argv)


# -- the page -------------------------------------------------------------------------------------


class ReviewPage(QWizardPage):
    """Everything that will happen, the findings, the output, Save recipe, the equivalent command."""

    #: A validation ended and its findings are shown.
    checkFinished = Signal()
    #: Saving the recipe ended (successfully or not) and the outcome is shown.
    saveFinished = Signal()
    #: The chosen recipe file exists: the page now asks, inline, whether to replace it.
    replaceAsked = Signal()

    def __init__(
        self,
        state: WizardState,
        runner: TaskRunner,
        parent: QWidget | None = None,
        *,
        checker: Callable[..., ReviewCheck] = check_recipe,
        saver: Callable[[Any, str, bool], Path] = save_recipe_file,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self._runner = runner
        self._checker = checker
        self._saver = saver
        self._check_task: BackgroundTask | None = None
        self._save_task: BackgroundTask | None = None
        self._check: ReviewCheck | None = None
        self._generation = 0
        self._recipe_error: ShieldwrightError | None = None
        #: The last recipe file saved from this page (the equivalent command names it).
        self.saved_recipe: Path | None = None
        self._saved_for: Any = None
        self._saving_recipe: Any = None
        self._dialogs: dict[str, QFileDialog] = {}
        self._syncing = False
        #: The existing recipe file the page is asking about (None: not asking).
        self.pending_replace: Path | None = None

        self.setTitle(self.tr("Review"))
        self.setSubTitle(
            self.tr(
                "Check what will be written. Nothing happens until you click Generate; the base image is "
                "only read, and the template is written to a new file."
            )
        )
        self.setCommitPage(True)
        self.setButtonText(QWizard.WizardButton.CommitButton, self.tr("&Generate"))
        self._build_ui()
        self.registerField(ALLOW_PRIVATE_FIELD, self.private_check)

    @property
    def output(self) -> OutputChoice:
        if self.state.output is None:
            self.state.output = OutputChoice()
        return self.state.output

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        style = self.style()
        self.summary = QTextBrowser(self)
        self.summary.setObjectName("reviewSummary")
        self.summary.setAccessibleName(self.tr("What Generate will do"))
        self.summary.setOpenLinks(False)
        self.summary.setFrameShape(QFrame.Shape.StyledPanel)
        self.summary.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.summary.setMinimumHeight(120)

        # Output path and format.
        self.output_value = ElidedLabel(self)  # long paths lose their middle, not the file name
        self.output_value.setObjectName("outputPath")
        self.change_button = QPushButton(self.tr("C&hange…"), self)
        self.change_button.setObjectName("changeOutput")
        self.change_button.setToolTip(self.tr("Choose where the template is written"))
        self.change_button.clicked.connect(self.choose_output_path)
        self.format_combo = QComboBox(self)
        self.format_combo.setObjectName("outputFormat")
        self.format_combo.setAccessibleName(self.tr("Output format"))
        for fmt in OUTPUT_FORMATS:
            self.format_combo.addItem(self.tr(format_label(fmt)), fmt)
        self.format_combo.currentIndexChanged.connect(self._on_format_changed)
        output_label = QLabel(self.tr("Output:"), self)
        format_label_widget = QLabel(self.tr("&Format:"), self)
        format_label_widget.setBuddy(self.format_combo)

        # Where a replayed recipe reads the provisioning passphrase.
        self.passphrase_combo = QComboBox(self)
        self.passphrase_combo.setObjectName("passphraseSource")
        self.passphrase_combo.setAccessibleName(self.tr("Where a replayed recipe gets the passphrase"))
        self.passphrase_combo.addItem(self.tr("asked for (prompt)"), "prompt")
        self.passphrase_combo.addItem(self.tr("read from a file…"), "file")
        self.passphrase_combo.setToolTip(
            self.tr("The recipe never contains the passphrase, only where a replay reads it from")
        )
        self.passphrase_combo.activated.connect(self._on_passphrase_source_activated)
        self.passphrase_file_label = QLabel(self)
        self.passphrase_file_label.setObjectName("passphraseFile")
        self.passphrase_file_label.setTextFormat(Qt.TextFormat.PlainText)
        self.passphrase_file_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        passphrase_label = QLabel(self.tr("&Passphrase on replay:"), self)
        passphrase_label.setBuddy(self.passphrase_combo)

        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(4)
        grid.addWidget(output_label, 0, 0)
        grid.addWidget(self.output_value, 0, 1)
        grid.addWidget(self.change_button, 0, 2)
        grid.addWidget(format_label_widget, 0, 3)
        grid.addWidget(self.format_combo, 0, 4)
        grid.addWidget(passphrase_label, 1, 0)
        row = QHBoxLayout()
        row.setSpacing(8)
        row.addWidget(self.passphrase_combo)
        row.addWidget(self.passphrase_file_label, 1)
        grid.addLayout(row, 1, 1, 1, 4)
        grid.setColumnStretch(1, 1)

        self.findings = FindingsList(self, max_rows=3)
        self.findings.setAccessibleName(self.tr("Problems found in the recipe"))
        self.private_check = QCheckBox(
            self.tr("Publish private &host files in the clear (other users of this computer cannot read)"),
            self,
        )
        self.private_check.setObjectName("allowPrivateInputs")
        self.private_check.setToolTip(
            self.tr("The UKI is stored unencrypted in the template's ESP: anyone holding the template can "
                    "read the files it was built from. Tick only if they are meant to be public.")
        )  # fmt: skip
        self.private_check.toggled.connect(self._on_private_toggled)
        self.private_check.hide()

        # Asked inline when the chosen recipe file exists (no modal dialog from a slot).
        self.replace_panel = QFrame(self)
        self.replace_panel.setObjectName("replaceRecipe")
        self.replace_label = QLabel(self.replace_panel)
        self.replace_label.setObjectName("replaceQuestion")
        self.replace_label.setWordWrap(True)
        self.replace_label.setTextFormat(Qt.TextFormat.PlainText)
        self.replace_button = QPushButton(self.tr("&Replace"), self.replace_panel)
        self.replace_button.setObjectName("replaceRecipeButton")
        self.replace_button.clicked.connect(self.confirm_replace)
        self.keep_button = QPushButton(self.tr("&Keep it"), self.replace_panel)
        self.keep_button.setObjectName("keepRecipeButton")
        self.keep_button.clicked.connect(self.cancel_replace)
        replace_row = QHBoxLayout(self.replace_panel)
        replace_row.setContentsMargins(0, 0, 0, 0)
        replace_row.addWidget(self.replace_label, 1)
        replace_row.addWidget(self.replace_button)
        replace_row.addWidget(self.keep_button)
        self.replace_panel.hide()

        # Save recipe / equivalent command.
        self.save_button = QPushButton(
            style.standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton), self.tr("&Save recipe…"), self
        )
        self.save_button.setObjectName("saveRecipe")
        self.save_button.setToolTip(
            self.tr("Save these choices as a recipe for shieldwright build (no passphrase is saved)")
        )
        self.save_button.clicked.connect(self.choose_recipe_path)
        self.command_button = QPushButton(self.tr("Show e&quivalent command"), self)
        self.command_button.setObjectName("showCommand")
        self.command_button.setCheckable(True)
        self.command_button.toggled.connect(self._on_command_toggled)
        self.status_label = QLabel(self)
        self.status_label.setObjectName("reviewStatus")
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.command_button)
        buttons.addSpacing(8)
        buttons.addWidget(self.status_label, 1)

        self.command_panel = QFrame(self)
        self.command_panel.setObjectName("commandPanel")
        self.command_text = QPlainTextEdit(self.command_panel)
        self.command_text.setObjectName("commandText")
        self.command_text.setReadOnly(True)
        self.command_text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.command_text.setAccessibleName(self.tr("Equivalent command"))
        self.command_text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.command_text.setFixedHeight(self.command_text.fontMetrics().lineSpacing() * 3 + 12)
        self.copy_button = QPushButton(self.tr("&Copy"), self.command_panel)
        self.copy_button.setObjectName("copyCommand")
        self.copy_button.clicked.connect(self.copy_command)
        self.command_note = QLabel(self.command_panel)
        self.command_note.setObjectName("commandNote")
        self.command_note.setWordWrap(True)
        self.command_note.setTextFormat(Qt.TextFormat.PlainText)
        self.command_note.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        command_row = QHBoxLayout()
        command_row.setContentsMargins(0, 0, 0, 0)
        command_row.addWidget(self.command_text, 1)
        command_row.addWidget(self.copy_button, 0, Qt.AlignmentFlag.AlignTop)
        command_layout = QVBoxLayout(self.command_panel)
        command_layout.setContentsMargins(0, 0, 0, 0)
        command_layout.setSpacing(2)
        command_layout.addLayout(command_row)
        command_layout.addWidget(self.command_note)
        self.command_panel.hide()

        self.confirm_label = QLabel(self)
        self.confirm_label.setObjectName("confirmation")
        self.confirm_label.setWordWrap(True)
        self.confirm_label.setTextFormat(Qt.TextFormat.PlainText)
        self.confirm_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        font = self.confirm_label.font()
        font.setBold(True)
        self.confirm_label.setFont(font)

        self.error_panel = ErrorPanel(self)

        layout = QVBoxLayout(self)
        layout.setSpacing(6)
        layout.addWidget(self.summary, 1)
        layout.addLayout(grid)
        layout.addWidget(self.findings)
        layout.addWidget(self.private_check)
        layout.addLayout(buttons)
        layout.addWidget(self.replace_panel)
        layout.addWidget(self.command_panel)
        layout.addWidget(self.error_panel)
        layout.addWidget(self.confirm_label)

        chain: list[QWidget] = [
            self.summary,
            self.change_button,
            self.format_combo,
            self.passphrase_combo,
            self.findings,
            self.private_check,
            self.save_button,
            self.command_button,
            self.command_text,
            self.copy_button,
        ]
        for first, second in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(first, second)

    # -- QWizardPage ------------------------------------------------------------------------------

    def initializePage(self) -> None:
        """Entering the page (always forward): propose an output, show the summary, validate."""
        output = self.output
        if output.path is None:
            output.path = default_output_path(self.state, output.format)
        self._sync_output_widgets()
        self.refresh()
        self.start_check()

    def cleanupPage(self) -> None:
        """Going Back: stop validating (the choices may change)."""
        self._stop_check()

    def isComplete(self) -> bool:
        check = self._check
        return (
            self._check_task is None
            and check is not None
            and check.generation == self._generation
            and self._recipe_error is None
            and not has_errors(check.findings)
            and self.output.path is not None
        )

    def validatePage(self) -> bool:
        return self.isComplete()

    def is_busy(self) -> bool:
        return self._check_task is not None or self._save_task is not None

    # -- checking ---------------------------------------------------------------------------------

    def recipe(self) -> Any:
        """The recipe for the current choices (raises ShieldwrightError when it cannot be made)."""
        return recipe_for(self.state)

    def start_check(self) -> None:
        """Make the recipe and validate it (and predict PCR 11) in the background."""
        self._stop_check()
        self._generation += 1
        self._check = None
        self._recipe_error = None
        self.error_panel.clear()
        try:
            recipe = self.recipe()
        except ShieldwrightError as exc:
            self._recipe_error = exc
            self.findings.set_findings([Finding(Severity.ERROR, exc.one_line())])
            self.refresh()
            self.checkFinished.emit()
            return
        uki = self.state.boot.uki
        allow = self.private_check.isChecked()
        task = self._runner.start(self._checker, recipe, uki, self._generation, allow, name="check-recipe")
        task.succeeded.connect(self._on_checked)
        task.failed.connect(self._on_check_failed)
        task.finished.connect(self._on_check_finished)
        self._check_task = task
        self.status_label.setText(self.tr("Checking the recipe…"))
        self.refresh()

    def _stop_check(self) -> None:
        task, self._check_task = self._check_task, None
        if task is not None:
            task.cancel()
            task.succeeded.disconnect(self._on_checked)
            task.failed.disconnect(self._on_check_failed)
            task.finished.disconnect(self._on_check_finished)

    def _on_checked(self, check: ReviewCheck) -> None:
        if check.generation != self._generation:
            return
        self._check = check
        self.findings.set_findings(check.findings, empty_text=self.tr("The recipe is complete and valid."))
        self.status_label.clear()
        self.private_check.setVisible(bool(check.private_files) or self.private_check.isChecked())

    def _on_private_toggled(self, _on: bool) -> None:
        self.start_check()

    def _on_check_failed(self, error: ShieldwrightError) -> None:
        self.findings.set_findings([Finding(Severity.ERROR, error.one_line())])
        self.status_label.clear()

    def _on_check_finished(self) -> None:
        task, self._check_task = self._check_task, None
        if task is not None and task.error is not None and not isinstance(task.error, ShieldwrightError):
            self.error_panel.show_error(
                self.tr("The recipe could not be checked because of an unexpected error."),
                self.tr("The details were written to the log."),
            )
            self.status_label.clear()
        self.refresh()
        self.checkFinished.emit()

    # -- showing ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        self.summary.setHtml(self._summary_html())
        output = self.output
        self.output_value.set_full_text(str(output.path) if output.path else self.tr("not chosen"))
        self._show_passphrase_source()
        self.confirm_label.setText(self.confirmation_text())
        saving = self._save_task is not None
        asking = self.pending_replace is not None
        self.save_button.setEnabled(not saving and not asking and "recipe" not in self._dialogs)
        self.change_button.setEnabled("output" not in self._dialogs)
        if self.command_panel.isVisible():
            self._show_command()
        self.completeChanged.emit()

    def summary_text(self) -> str:
        """The summary as plain text (what a screen reader gets, and what tests read)."""
        return self.summary.toPlainText()

    def confirmation_text(self) -> str:
        path = self.output.path
        if path is None:
            return self.tr("Choose where the template is written.")
        base = self.state.image_path.name if self.state.image_path else "?"
        replace = path.exists()
        text = (
            self.tr(
                "Generate writes the template %1 in %2, with its catalog, signed manifest and report. "
                "The base image %3 is only read, never modified."
            )
            .replace("%1", path.name)
            .replace("%2", str(path.parent))
            .replace("%3", base)
        )
        if replace:
            # The build never replaces an existing output it was not told to (issue 17 item 8).
            text += " " + self.tr(
                "%1 already exists: Generate stops rather than replace it — choose another name or move it."
            ).replace("%1", path.name)
        return text

    def _summary_html(self) -> str:
        groups = self.summary_groups()
        palette = self.palette()
        muted = palette.color(QPalette.ColorRole.PlaceholderText).name()
        parts = ["<table cellspacing='0' cellpadding='2' width='100%'>"]
        for title, rows in groups:
            parts.append(f"<tr><td colspan='2' style='padding-top:6px'><b>{html.escape(title)}</b></td></tr>")
            for label, value, mono in rows:
                cell = html.escape(value).replace("\n", "<br>")
                if mono:
                    cell = f"<span style='font-family:monospace'>{cell}</span>"
                parts.append(
                    f"<tr><td style='color:{muted}; padding-left:12px' width='28%' valign='top'>"
                    f"{html.escape(label)}</td><td valign='top'>{cell}</td></tr>"
                )
        parts.append("</table>")
        return "".join(parts)

    def summary_groups(self) -> list[tuple[str, list[tuple[str, str, bool]]]]:
        """``[(group, [(label, value, monospace), …]), …]`` in the order the build does them."""
        tr = self.tr
        state = self.state
        groups: list[tuple[str, list[tuple[str, str, bool]]]] = []

        # 1. Base image and layout.
        rows: list[tuple[str, str, bool]] = []
        layout = state.layout
        if state.image_path is None or layout is None:
            rows.append((tr("Base image"), tr("none opened"), False))
        else:
            rows.append((tr("File"), str(state.image_path), False))
            rows.append(
                (
                    tr("Format and size"),
                    f"{layout.format}, {human_size(layout.virtual_size)} — "
                    + tr("read only, never modified"),
                    False,
                )
            )
            parts = ", ".join(
                f"{p.number} {display_name(p)} ({human_size(p.size_bytes)})" for p in layout.partitions
            )
            rows.append((tr("Partitions (GPT)"), parts or tr("none"), False))
            protected = [p for p in layout.partitions if p.number in state.protected]
            rows.append(
                (
                    tr("Protected"),
                    ", ".join(f"{p.number} {display_name(p)}" for p in protected) or tr("none"),
                    False,
                )
            )
        groups.append((tr("1. Base image"), rows))

        # 2. Signing.
        rows = []
        rows += self._signer_rows(tr("UEFI image signing"), state.uefi_signing)
        if state.catalog_same_as_uefi:
            rows.append(
                (tr("Catalog and manifest"), tr("signed with the UEFI image signing certificate"), False)
            )
        else:
            rows += self._signer_rows(tr("Catalog and manifest"), state.catalog_signing)
        groups.append((tr("2. Signing certificates"), rows))

        # 3. UKI.
        rows = []
        boot = state.boot
        if not boot.configured:
            rows.append((tr("Kernel"), tr("not chosen"), False))
        else:
            if boot.source == "existing-uki" and boot.existing_uki is not None:
                action = {"keep": tr("kept as it is"), "re-sign": tr("re-signed"), "replace": tr("replaced")}
                rows.append(
                    (
                        tr("Existing UKI"),
                        f"{boot.existing_uki.path} ("
                        + tr("partition %1").replace("%1", str(boot.existing_uki.partition_number))
                        + f"), {action.get(boot.existing_action, boot.existing_action)}",
                        False,
                    )
                )
            if boot.builds_new_uki:
                if boot.kernel_from_image and boot.kernel is not None:
                    kernel = (
                        f"{boot.kernel.path} ("
                        + tr("partition %1").replace("%1", str(boot.kernel.partition_number))
                        + ")"
                    )
                    initrds = ", ".join(f.path for f in boot.initrds)
                else:
                    kernel = str(boot.kernel_path)
                    initrds = ", ".join(str(p) for p in boot.initrd_paths)
                rows.append((tr("Kernel"), kernel, False))
                rows.append((tr("Initrd"), initrds or tr("none"), False))
                rows.append((tr("Command line"), boot.cmdline or tr("(empty)"), True))
                stub = str(boot.stub_path) if boot.stub_path else tr("the host's systemd-stub")
                rows.append((tr("Stub"), stub, False))
        signer = state.uefi_signing
        if signer is not None and signer.info is not None:
            rows.append((tr("Signed by"), signer.info.subject, False))
        else:
            rows.append((tr("Signed by"), tr("nobody — Secure Boot will refuse it"), False))
        check = self._check
        if check is not None and check.pcr11:
            pcr_value, mono = check.pcr11, True
        elif check is not None:
            pcr_value, mono = tr("not shown: %1").replace("%1", check.pcr_note), False
        else:
            pcr_value, mono = tr("computing…"), False
        rows.append((tr("PCR 11 (SHA-256, before any phase)"), pcr_value, mono))
        if boot.configured:
            rows.append((tr("Host files in the clear (ESP)"), self._host_files_text(), False))
        groups.append((tr("3. Boot image (UKI)"), rows))

        # 4. Encryption.
        rows = []
        enc = state.encryption
        if enc is None or not enc.partitions:
            rows.append((tr("Partitions"), tr("none encrypted"), False))
        else:
            names = {p.number: display_name(p) for p in (layout.partitions if layout else [])}
            rows.append(
                (
                    tr("Partitions"),
                    ", ".join(f"{n} {names.get(n, '')}".strip() for n in sorted(enc.partitions))
                    + " — " + tr("LUKS2, encrypted in full"),
                    False,
                )
            )  # fmt: skip
            rows.append((tr("Cipher"), f"{enc.cipher}, {enc.key_bits}-bit key", False))
            rows.append((tr("Sector size"), tr("%1 bytes").replace("%1", str(enc.sector_size)), False))
            rows.append((tr("Key derivation"), self._kdf_text(), False))
            secret = tr("set (not shown)") if enc.passphrase else tr("missing")
            rows.append((tr("Provisioning passphrase"), secret, False))
            rows.append(
                (
                    tr("Recovery key"),
                    tr("yes — the key you stored") if enc.recovery_key else tr("no"),
                    False,
                )
            )
        groups.append((tr("4. Encryption"), rows))

        # 5. Catalog.
        rows = []
        cat = state.catalog
        if cat is None:
            rows.append((tr("Catalog"), tr("not configured"), False))
        else:
            rows.append((tr("Template name"), cat.template_name or tr("(none)"), False))
            rows.append((tr("Version"), cat.template_version, False))
            rows.append((tr("Block size"), human_size(cat.block_size), False))
            rows.append((tr("Stored"), tr("in the ESP and beside the template"), False))
        groups.append((tr("5. Signature catalog"), rows))

        # 6. Output.
        rows = []
        output = self.output
        if output.path is None:
            rows.append((tr("Template"), tr("not chosen"), False))
        else:
            paths = artifact_paths(output.path)
            rows.append((tr("Template"), str(output.path), False))
            rows.append((tr("Format"), tr(format_label(output.format)), False))
            also = [p.name for role, p in paths.items() if role != "template"]
            recovery = self.recovery_key_file()
            if recovery is not None:
                also.append(recovery.name + " " + tr("(the recovery key, mode 0600)"))
            rows.append((tr("Also written"), ", ".join(also), False))
        groups.append((tr("6. Output"), rows))
        return groups

    def _host_files_text(self) -> str:
        """Every host file the UKI puts in the clear into the ESP, private ones marked (after the check)."""
        from app.template.checks import published_host_files

        try:
            files = published_host_files(self.recipe())
        except ShieldwrightError:
            return self.tr("unknown until the choices are complete")
        if not files:
            return self.tr("none — the UKI comes from the base image")
        private = set(self._check.private_files) if self._check is not None else set()
        lines = []
        for f in files:
            line = f"{f.role}: {f.path}"
            if str(f.path) in private:
                line += " — " + self.tr("PRIVATE: other users of this computer cannot read it")
            lines.append(line)
        return "\n".join(lines)

    def recovery_key_file(self) -> Path | None:
        """Where the build writes the recovery key (beside the output), or None without one."""
        enc, output = self.state.encryption, self.output
        if enc is None or not enc.recovery_key or not enc.partitions or output.path is None:
            return None
        from app.template.recipe import default_recovery_key_file

        return default_recovery_key_file(output.path)

    def _signer_rows(self, label: str, choice: SigningChoice | None) -> list[tuple[str, str, bool]]:
        if choice is None or choice.info is None:
            return [(label, self.tr("none chosen"), False)]
        info = choice.info
        return [
            (label, info.subject, False),
            (self.tr("SHA-256 thumbprint"), thumbprint_hex(info.sha256_fingerprint), True),
        ]

    def _kdf_text(self) -> str:
        enc = self.state.encryption
        if enc is None:
            return ""
        if enc.kdf_ready and enc.kdf_params is not None:
            from wizard_pages.encryption import describe_kdf

            return describe_kdf(enc.kdf_params, enc.iter_time_ms)
        return self.tr("%1, not calibrated yet").replace("%1", enc.kdf)

    # -- output -----------------------------------------------------------------------------------

    def _sync_output_widgets(self) -> None:
        self._syncing = True
        try:
            index = self.format_combo.findData(self.output.format)
            self.format_combo.setCurrentIndex(max(index, 0))
        finally:
            self._syncing = False

    def _on_format_changed(self) -> None:
        if self._syncing:
            return
        fmt = str(self.format_combo.currentData())
        output = self.output
        output.format = fmt
        if output.path is not None:
            output.path = with_format_suffix(output.path, fmt)
        self.refresh()
        self.start_check()

    def set_output_path(self, path: str | Path) -> None:
        """Write the template to ``path``; a known extension also chooses the format."""
        path = Path(path)
        output = self.output
        output.path = path
        fmt = format_for_path(path)
        if fmt is not None and fmt != output.format:
            output.format = fmt
            self._sync_output_widgets()
        self.refresh()
        self.start_check()

    def choose_output_path(self) -> QFileDialog:
        """A non-blocking Save dialog for the template's path."""
        output = self.output
        start = output.path or default_output_path(self.state, output.format) or Path.home() / "template.raw"
        dialog = self._file_dialog("output", self.tr("Template output"), start.parent, save=True)
        dialog.setNameFilters(
            [self.tr(format_label(output.format)).replace(f"(.{FORMAT_EXTENSIONS[output.format]})",
                                                          f"(*.{FORMAT_EXTENSIONS[output.format]})"),
             self.tr("All files (*)")]
        )  # fmt: skip
        dialog.setDefaultSuffix(FORMAT_EXTENSIONS[output.format])
        dialog.selectFile(start.name)
        dialog.fileSelected.connect(self.set_output_path)
        dialog.open()
        self.refresh()
        return dialog

    def _file_dialog(self, kind: str, title: str, directory: Path, *, save: bool) -> QFileDialog:
        old = self._dialogs.get(kind)
        if old is not None:
            old.close()
        dialog = QFileDialog(self, title, str(directory))
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave if save else QFileDialog.AcceptMode.AcceptOpen)
        dialog.setFileMode(QFileDialog.FileMode.AnyFile if save else QFileDialog.FileMode.ExistingFile)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(functools.partial(self._on_dialog_closed, kind))
        self._dialogs[kind] = dialog
        return dialog

    def _on_dialog_closed(self, kind: str, _result: int) -> None:
        self._dialogs.pop(kind, None)
        if kind == "passphrase":
            self._show_passphrase_source()
        self.refresh()

    # -- passphrase source ------------------------------------------------------------------------

    def _on_passphrase_source_activated(self, _index: int) -> None:
        if self.passphrase_combo.currentData() == "file":
            self.choose_passphrase_file()
        else:
            self.set_passphrase_file(None)

    def choose_passphrase_file(self) -> QFileDialog:
        """Non-blocking: name the file a replayed recipe reads the provisioning passphrase from."""
        enc = self.state.encryption
        start = enc.passphrase_file.parent if enc and enc.passphrase_file else (
            self.state.image_path.parent if self.state.image_path else Path.home()
        )  # fmt: skip
        dialog = self._file_dialog("passphrase", self.tr("Passphrase file for replays"), start, save=False)
        dialog.setNameFilters([self.tr(f) for f in PASSPHRASE_FILTERS])
        dialog.fileSelected.connect(self.set_passphrase_file)
        dialog.open()
        return dialog

    def set_passphrase_file(self, path: str | Path | None) -> None:
        """Record ``path`` as the passphrase source of replays (None: prompt). The file is not read."""
        enc = self.state.encryption
        if enc is None:
            return
        enc.passphrase_file = Path(path) if path else None
        self.refresh()
        self.start_check()

    def _show_passphrase_source(self) -> None:
        enc = self.state.encryption
        has_file = enc is not None and enc.passphrase_file is not None
        self.passphrase_combo.setEnabled(enc is not None)
        self.passphrase_combo.setCurrentIndex(1 if has_file or "passphrase" in self._dialogs else 0)
        if has_file:
            assert enc is not None and enc.passphrase_file is not None
            self.passphrase_file_label.setText(str(enc.passphrase_file))
            self.passphrase_file_label.setToolTip(str(enc.passphrase_file))
        else:
            self.passphrase_file_label.setText(
                self.tr("the passphrase is never written to the recipe") if enc is not None else ""
            )
            self.passphrase_file_label.setToolTip("")
        self.passphrase_file_label.setForegroundRole(
            QPalette.ColorRole.WindowText if has_file else QPalette.ColorRole.PlaceholderText
        )

    # -- save recipe ------------------------------------------------------------------------------

    def choose_recipe_path(self) -> QFileDialog:
        """A non-blocking Save dialog; the recipe is written when a file is chosen."""
        output = self.output
        directory = (
            self.saved_recipe.parent
            if self.saved_recipe
            else (output.path.parent if output.path else (self.state.image_path or Path.home()).parent)
        )
        cat = self.state.catalog
        name = safe_stem(cat.template_name, cat.template_version) if cat else "template"
        dialog = self._file_dialog("recipe", self.tr("Save recipe"), directory, save=True)
        # The page asks itself, inline, when the file exists (the same question with any file dialog).
        dialog.setOption(QFileDialog.Option.DontConfirmOverwrite, True)
        dialog.setNameFilters([self.tr(f) for f in RECIPE_FILTERS])
        dialog.setDefaultSuffix("toml")
        dialog.selectFile(self.saved_recipe.name if self.saved_recipe else f"{name}.recipe.toml")
        dialog.fileSelected.connect(self.save_recipe_to)
        dialog.open()
        self.refresh()
        return dialog

    def save_recipe_to(self, path: str | Path, overwrite: bool = False) -> None:
        """Write the recipe for the current choices to ``path`` in the background; an existing file only
        with ``overwrite`` - else the page first asks, inline, and :meth:`confirm_replace` saves."""
        if self._save_task is not None:
            return
        self.error_panel.clear()
        self._hide_replace()
        if not overwrite and Path(path).exists():
            self.pending_replace = Path(path)
            self.replace_label.setText(
                self.tr("%1 already exists. Replace it with this recipe?").replace("%1", str(path))
            )
            self.replace_panel.show()
            self.replace_button.setFocus()
            self.refresh()
            self.replaceAsked.emit()
            return
        try:
            recipe = self.recipe()
        except ShieldwrightError as exc:
            self.error_panel.show_error(exc.message, exc.hint)
            self.saveFinished.emit()
            return
        task = self._runner.start(self._saver, recipe, str(path), overwrite, name="save-recipe")
        self._save_task = task
        self._saving_recipe = recipe
        task.succeeded.connect(self._on_saved)
        task.failed.connect(self._on_save_failed)
        task.finished.connect(self._on_save_finished)
        self.status_label.setText(self.tr("Saving the recipe…"))
        self.refresh()

    def confirm_replace(self) -> None:
        """*Replace*: save over the existing file the page asked about."""
        path = self.pending_replace
        if path is not None:
            self.save_recipe_to(path, overwrite=True)

    def cancel_replace(self) -> None:
        """*Keep it*: nothing is written."""
        if self.pending_replace is not None:
            self._hide_replace()
            self.status_label.setText(self.tr("Not saved: the existing file was kept."))
            self.refresh()

    def _hide_replace(self) -> None:
        self.pending_replace = None
        self.replace_panel.hide()

    def _on_saved(self, path: Path) -> None:
        log.info("recipe saved to %s", path)
        self.saved_recipe = Path(path)
        self._saved_for = self._saving_recipe
        self.status_label.setText(self.tr("Recipe saved to %1").replace("%1", str(path)))
        self.status_label.setToolTip(str(path))

    def _on_save_failed(self, error: ShieldwrightError) -> None:
        self.status_label.clear()
        self.error_panel.show_error(error.message, error.hint)

    def _on_save_finished(self) -> None:
        task, self._save_task = self._save_task, None
        if task is not None:
            task.succeeded.disconnect(self._on_saved)
            task.failed.disconnect(self._on_save_failed)
            task.finished.disconnect(self._on_save_finished)
            if task.error is not None and not isinstance(task.error, ShieldwrightError):
                self.status_label.clear()
                self.error_panel.show_error(
                    self.tr("The recipe could not be saved because of an unexpected error."),
                    self.tr("The details were written to the log."),
                )
        self._saving_recipe = None
        self.refresh()
        self.saveFinished.emit()

    def recipe_is_saved(self) -> bool:
        """The saved recipe file still says what the current choices say."""
        if self.saved_recipe is None or self._saved_for is None:
            return False
        try:
            return bool(self._saved_for == self.recipe())
        except ShieldwrightError:
            return False

    # -- equivalent command -----------------------------------------------------------------------

    def command_line(self) -> str:
        """``shieldwright build RECIPE`` once the recipe is saved (and current), else the flags form."""
        if self.recipe_is_saved():
            assert self.saved_recipe is not None
            return recipe_command(self.saved_recipe)
        return flags_command(self.state)

    def _on_command_toggled(self, on: bool) -> None:
        self.command_panel.setVisible(on)
        self.command_button.setText(
            self.tr("Hide e&quivalent command") if on else self.tr("Show e&quivalent command")
        )
        if on:
            self._show_command()

    def _show_command(self) -> None:
        self.command_text.setPlainText(self.command_line())
        if self.recipe_is_saved():
            note = self.tr("Replays the saved recipe. Add --passphrase-file FILE to run it unattended.")
        else:
            note = self.tr(
                "The flags cover the common choices; the kernel, os-release, KDF cost and block size take "
                "the defaults. Save the recipe to replay every choice exactly."
            )
        self.command_note.setText(note)

    def copy_command(self) -> None:
        QGuiApplication.clipboard().setText(self.command_line())
        self.status_label.setText(self.tr("Command copied to the clipboard."))
