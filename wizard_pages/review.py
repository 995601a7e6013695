"""Wizard page: Review — everything the build will do, and the commit point (Microsoft's *Review Settings*).

The summary (:mod:`wizard_pages.review_summary`) lists, step by step, what *Generate* will do; the state's
recipe (:meth:`WizardState.recipe`) is validated in the background and an ERROR keeps *Generate* disabled,
as does a private host file the UKI would publish unless *Publish private host files* is ticked (the wizard
field ``allowPrivateInputs``, handed to the build). *Save recipe…* writes the recipe (no secret; an existing
file only after asking inline); *Show equivalent command* gives the ``shieldwright build`` command from the
options table (:func:`app.template.options.equivalent_argv`). It is a commit page: its button says Generate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
    QWizard,
)

from app.errors import ShieldwrightError
from app.findings import Finding, Severity, has_errors
from app.gui.file_dialogs import RECIPE_FILTERS
from app.gui.page import WizardPage
from app.gui.state import OutputChoice, WizardState
from app.gui.tasks import TaskRunner
from app.gui.widgets.elided_label import StatusLine
from app.gui.widgets.findings_list import FindingsList
from app.gui.widgets.review_command_panel import CommandPanel
from app.gui.widgets.review_inline_question import InlineQuestion
from app.gui.widgets.review_output_field import OutputFileField
from app.gui.widgets.review_secret_source import SecretSourceField
from app.gui.widgets.review_summary_view import Group, SummaryView
from app.template.recipe import OUTPUT_FORMATS, OutputOptions, Recipe, SecretSource
from wizard_pages.review_summary import (
    ReviewCheck,
    check_recipe,
    confirmation_text,
    default_output_path,
    equivalent_command,
    extension,
    format_for_path,
    format_label,
    passphrase_file,
    safe_stem,
    save_recipe_file,
    summary_groups,
    with_format_suffix,
)

log = logging.getLogger(__name__)

PASSPHRASE_FILTERS = ("All files (*)",)
#: The wizard field (QWizard.field) holding "publish private host files"; the Generate page reads it.
ALLOW_PRIVATE_FIELD = "allowPrivateInputs"


class ReviewPage(WizardPage):
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
        saver: Callable[[Recipe, str, bool], Path] = save_recipe_file,
    ) -> None:
        super().__init__(state, runner, parent)
        self._checker = checker
        self._saver = saver
        self._check: ReviewCheck | None = None
        self._recipe_error: ShieldwrightError | None = None
        #: The format chosen while there is no output path yet.
        self._format = "raw"
        #: The last recipe file saved from this page (the equivalent command names it).
        self.saved_recipe: Path | None = None
        self._saved_for: Recipe | None = None
        self._saving_recipe: Recipe | None = None
        self._save_ok = False
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

    @property
    def output_format(self) -> str:
        o = self.output.options
        return o.format if o is not None else self._format

    # -- UI ---------------------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.summary = SummaryView(self)
        self.summary.setObjectName("reviewSummary")
        self.summary.setAccessibleName(self.tr("What Generate will do"))

        # Output path and format; where a replayed recipe reads the provisioning passphrase.
        self.output_field = OutputFileField([(format_label(f), f) for f in OUTPUT_FORMATS], self)
        self.change_button = self.output_field.change_button
        self.change_button.setToolTip(self.tr("Choose where the template is written"))
        self.format_combo = self.output_field.format_combo
        self.output_field.changeRequested.connect(self.choose_output_path)
        self.output_field.formatChosen.connect(self._on_format_chosen)
        self.passphrase_field = SecretSourceField(self)
        self.passphrase_combo = self.passphrase_field.combo
        self.passphrase_combo.setAccessibleName(self.tr("Where a replayed recipe gets the passphrase"))
        self.passphrase_combo.setToolTip(
            self.tr("The recipe never contains the passphrase, only where a replay reads it from")
        )
        self.passphrase_field.fileRequested.connect(self.choose_passphrase_file)
        self.passphrase_field.promptChosen.connect(lambda: self.set_passphrase_file(None))
        passphrase_caption = QLabel(self.tr("&Passphrase on replay:"), self)
        passphrase_caption.setBuddy(self.passphrase_combo)
        grid = QGridLayout()
        grid.setHorizontalSpacing(8)
        grid.setVerticalSpacing(4)
        grid.addWidget(QLabel(self.tr("Output:"), self), 0, 0)
        grid.addWidget(self.output_field, 0, 1)
        grid.addWidget(passphrase_caption, 1, 0)
        grid.addWidget(self.passphrase_field, 1, 1)
        grid.setColumnStretch(1, 1)

        self.findings = FindingsList(self, max_rows=3)
        self.findings.setAccessibleName(self.tr("Problems found in the recipe"))
        self.private_check = QCheckBox(
            self.tr("P&ublish private host files in the clear (other users of this computer cannot read)"),
            self,
        )
        self.private_check.setObjectName("allowPrivateInputs")
        self.private_check.setToolTip(
            self.tr("The UKI is stored unencrypted in the template's ESP: anyone holding the template can "
                    "read the files it was built from. Tick only if they are meant to be public.")
        )  # fmt: skip
        self.private_check.toggled.connect(lambda _on: self.start_check())
        self.private_check.hide()
        # The findings and the checkbox share a fixed room (three rows): their changes move nothing.
        self.findings_area = QWidget(self)
        area = QVBoxLayout(self.findings_area)
        area.setContentsMargins(0, 0, 0, 0)
        area.setSpacing(4)
        area.addWidget(self.findings)
        area.addWidget(self.private_check)
        area.addStretch(1)
        self.findings_area.setFixedHeight(self.findings.reserved_height())

        # Asked inline when the chosen recipe file exists (no modal dialog from a slot).
        self.replace_panel = InlineQuestion(self.tr("&Replace"), self.tr("&Keep it"), self)
        self.replace_panel.setObjectName("replaceRecipe")
        self.replace_label, self.replace_button = self.replace_panel.label, self.replace_panel.yes_button
        self.keep_button = self.replace_panel.no_button
        self.replace_panel.accepted.connect(self.confirm_replace)
        self.replace_panel.rejected.connect(self.cancel_replace)

        # Save recipe / equivalent command.
        save_icon = self.style().standardIcon(QStyle.StandardPixmap.SP_DialogSaveButton)
        self.save_button = QPushButton(save_icon, self.tr("&Save recipe…"), self)
        self.save_button.setObjectName("saveRecipe")
        self.save_button.setToolTip(
            self.tr("Save these choices as a recipe for shieldwright build (no passphrase is saved)")
        )
        self.save_button.clicked.connect(self.choose_recipe_path)
        self.command_button = QPushButton(self.tr("Show e&quivalent command"), self)
        self.command_button.setObjectName("showCommand")
        self.command_button.setCheckable(True)
        self.command_button.toggled.connect(self._on_command_toggled)
        # As wide as its wider text: Show/Hide must not move what follows it.
        widths = []
        for text in (self.tr("Show e&quivalent command"), self.tr("Hide e&quivalent command")):
            self.command_button.setText(text)
            widths.append(self.command_button.sizeHint().width())
        self.command_button.setText(self.tr("Show e&quivalent command"))
        self.command_button.setMinimumWidth(max(widths))
        self.status_label = StatusLine(self, name="reviewStatus")
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.command_button)
        buttons.addSpacing(8)
        buttons.addWidget(self.status_label, 1)

        self.command_panel = CommandPanel(self)
        self.command_panel.setObjectName("commandPanel")
        self.command_text, self.copy_button = self.command_panel.text, self.command_panel.copy_button
        self.command_note = self.command_panel.note
        self.command_panel.copied.connect(
            lambda: self.status_label.setText(self.tr("Command copied to the clipboard."))
        )
        self.command_panel.hide()

        self.confirm_label = StatusLine(self, lines=3, name="confirmation")
        self.confirm_label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        font = self.confirm_label.font()
        font.setBold(True)
        self.confirm_label.setFont(font)

        # Everything under the summary keeps its place: the panels that come and go sit right under the
        # summary (it gives them its room), the findings and the status lines keep a fixed height.
        layout = self.body_layout()
        layout.setSpacing(6)
        layout.addWidget(self.summary, 1)
        layout.addWidget(self.replace_panel)
        layout.addWidget(self.command_panel)
        layout.addWidget(self.error_panel)
        layout.addLayout(grid)
        layout.addWidget(self.findings_area)
        layout.addLayout(buttons)
        layout.addWidget(self.confirm_label)

        chain: list[QWidget] = [self.summary, self.change_button, self.format_combo, self.passphrase_combo,
                                self.findings, self.private_check, self.save_button, self.command_button,
                                self.command_text, self.copy_button]  # fmt: skip
        for first, second in zip(chain, chain[1:], strict=False):
            QWidget.setTabOrder(first, second)

    # -- QWizardPage ------------------------------------------------------------------------------

    def initializePage(self) -> None:
        """Entering the page (always forward): propose an output, show the summary, validate."""
        output = self.output
        if output.options is None:
            path = default_output_path(self.state, self._format)
            if path is not None:
                output.options = OutputOptions(path, self._format)
        self.output_field.set_format(self.output_format)
        self.refresh()
        self.start_check()

    def cleanupPage(self) -> None:
        """Going Back: stop validating (the choices may change)."""
        self.cancel_task("check")

    def isComplete(self) -> bool:
        check = self._check
        return (
            self.task("check") is None
            and check is not None
            and self._recipe_error is None
            and not has_errors(check.findings)
            and self.output.path is not None
        )

    def validatePage(self) -> bool:
        return self.isComplete()

    # -- checking ---------------------------------------------------------------------------------

    def recipe(self) -> Recipe:
        """The recipe for the current choices (raises ShieldwrightError when it cannot be made)."""
        return self.state.recipe()

    def _recipe_or_none(self) -> Recipe | None:
        try:
            return self.recipe()
        except ShieldwrightError:
            return None

    def start_check(self) -> None:
        """Make the recipe and validate it (and predict PCR 11) in the background."""
        self._check = None
        self._recipe_error = None
        self.error_panel.clear()
        try:
            recipe = self.recipe()
        except ShieldwrightError as exc:
            self.cancel_task("check")
            self._recipe_error = exc
            self.findings.set_findings([Finding(Severity.ERROR, exc.one_line())])
            self.refresh()
            self.checkFinished.emit()
            return
        allow = self.private_check.isChecked()
        self.run_task("check", self._checker, recipe, self.state.uki.uki, allow, on_success=self._on_checked,
                      on_failure=self._on_check_failed, on_finished=self._on_check_finished)  # fmt: skip
        self.status_label.setText(self.tr("Checking the recipe…"))
        self.refresh()

    def _on_checked(self, check: ReviewCheck) -> None:
        self._check = check
        self.findings.set_findings(check.findings, empty_text=self.tr("The recipe is complete and valid."))
        self.private_check.setVisible(bool(check.private_files) or self.private_check.isChecked())

    def _on_check_failed(self, error: ShieldwrightError) -> None:
        self.findings.set_findings([Finding(Severity.ERROR, error.one_line())])

    def _on_check_finished(self) -> None:
        self.status_label.clear()
        self.refresh()
        self.checkFinished.emit()

    # -- showing ----------------------------------------------------------------------------------

    def refresh(self) -> None:
        self.summary.set_groups(self.summary_groups())
        path = self.output.path
        self.output_field.set_path(str(path) if path else self.tr("not chosen"))
        self._show_passphrase_source()
        self.confirm_label.setText(confirmation_text(self.state))
        busy_saving = self.task("save") is not None or self.pending_replace is not None
        self.save_button.setEnabled(not busy_saving and self.open_dialog("recipe") is None)
        self.change_button.setEnabled(self.open_dialog("output") is None)
        if self.command_panel.isVisible():
            self._show_command()
        self.completeChanged.emit()

    def summary_groups(self) -> list[Group]:
        """``[(group, [(label, value, monospace), …]), …]`` in the order the build does them."""
        return summary_groups(self.state, self._recipe_or_none(), self._check, self.output_format)

    def summary_text(self) -> str:
        """The summary as plain text (what a screen reader gets, and what tests read)."""
        return self.summary.toPlainText()

    # -- output -----------------------------------------------------------------------------------

    def _on_format_chosen(self, fmt: str) -> None:
        self._format = fmt
        o = self.output.options
        if o is not None:
            o.format, o.path = fmt, with_format_suffix(o.path, fmt)
        self.refresh()
        self.start_check()

    def set_output_path(self, path: str | Path) -> None:
        """Write the template to ``path``; a known extension also chooses the format."""
        fmt = format_for_path(Path(path)) or self.output_format
        changed = fmt != self.output_format
        self._format = fmt
        self.output.options = OutputOptions(Path(path), fmt)
        if changed:
            self.output_field.set_format(fmt)
        self.refresh()
        self.start_check()

    def choose_output_path(self) -> QFileDialog:
        """A non-blocking Save dialog for the template's path."""
        fmt, ext = self.output_format, extension(self.output_format)
        start = self.output.path or default_output_path(self.state, fmt) or Path.home() / f"template.{ext}"
        label = format_label(fmt).replace(f"(.{ext})", f"(*.{ext})")
        dialog = self.file_dialog("output", self.tr("Template output"), start.parent, self.set_output_path,
                                  filters=(label, "All files (*)"), save=True, select=start.name)  # fmt: skip
        dialog.setDefaultSuffix(ext)
        dialog.finished.connect(lambda _result: self.refresh())
        self.refresh()
        return dialog

    # -- passphrase source ------------------------------------------------------------------------

    def choose_passphrase_file(self) -> QFileDialog:
        """Non-blocking: name the file a replayed recipe reads the provisioning passphrase from."""
        current, image = passphrase_file(self.state), self.state.image_path
        start = current.parent if current else (image.parent if image else Path.home())
        dialog = self.file_dialog("passphrase", self.tr("Passphrase file for replays"), start,
                                  self.set_passphrase_file, filters=PASSPHRASE_FILTERS)  # fmt: skip
        dialog.finished.connect(lambda _result: self.refresh())
        self._show_passphrase_source()
        return dialog

    def set_passphrase_file(self, path: str | Path | None) -> None:
        """Record ``path`` as the passphrase source of replays (None: prompt). The file is not read."""
        enc = self.state.encryption
        if enc is None:
            return
        enc.options.passphrase = SecretSource.file(Path(path)) if path else SecretSource.prompt()
        self.refresh()
        self.start_check()

    def _show_passphrase_source(self) -> None:
        enc = self.state.encryption
        self.passphrase_field.setEnabled(enc is not None)
        note = self.tr("the passphrase is never written to the recipe") if enc is not None else ""
        self.passphrase_field.show_source(
            passphrase_file(self.state), choosing=self.open_dialog("passphrase") is not None, note=note
        )

    # -- save recipe ------------------------------------------------------------------------------

    def choose_recipe_path(self) -> QFileDialog:
        """A non-blocking Save dialog; the recipe is written when a file is chosen."""
        path, image = self.output.path, self.state.image_path
        saved = self.saved_recipe
        directory = saved.parent if saved else (path.parent if path else (image or Path.home()).parent)
        cat = self.state.catalog.options if self.state.catalog is not None else None
        name = safe_stem(cat.name, cat.version) if cat is not None else "template"
        # The page asks itself, inline, when the file exists (the same question with any file dialog).
        dialog = self.file_dialog(
            "recipe", self.tr("Save recipe"), directory, self.save_recipe_to, filters=RECIPE_FILTERS,
            save=True, select=saved.name if saved else f"{name}.recipe.toml", confirm_overwrite=False,
        )  # fmt: skip
        dialog.setDefaultSuffix("toml")
        dialog.finished.connect(lambda _result: self.refresh())
        self.refresh()
        return dialog

    def save_recipe_to(self, path: str | Path, overwrite: bool = False) -> None:
        """Write the recipe for the current choices to ``path`` in the background; an existing file only
        with ``overwrite`` - else the page first asks, inline, and :meth:`confirm_replace` saves."""
        if self.task("save") is not None:
            return
        self.error_panel.clear()
        self._hide_replace()
        if not overwrite and Path(path).exists():
            self.pending_replace = Path(path)
            self.replace_panel.ask(
                self.tr("%1 already exists. Replace it with this recipe?").replace("%1", str(path))
            )
            self.refresh()
            self.replaceAsked.emit()
            return
        try:
            recipe = self.recipe()
        except ShieldwrightError as exc:
            self.show_error(exc)
            self.saveFinished.emit()
            return
        self._saving_recipe, self._save_ok = recipe, False
        self.run_task("save", self._saver, recipe, str(path), overwrite, on_success=self._on_saved,
                      on_failure=self.show_error, on_finished=self._on_save_finished)  # fmt: skip
        self.status_label.setText(self.tr("Saving the recipe…"))
        self.refresh()

    def confirm_replace(self) -> None:
        """*Replace*: save over the existing file the page asked about."""
        if self.pending_replace is not None:
            self.save_recipe_to(self.pending_replace, overwrite=True)

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
        self.saved_recipe, self._saved_for, self._save_ok = Path(path), self._saving_recipe, True
        self.status_label.setText(self.tr("Recipe saved to %1").replace("%1", str(path)))

    def _on_save_finished(self) -> None:
        if not self._save_ok:
            self.status_label.clear()
        self._saving_recipe = None
        self.refresh()
        self.saveFinished.emit()

    def recipe_is_saved(self) -> bool:
        """The saved recipe file still says what the current choices say."""
        return (
            self.saved_recipe is not None
            and self._saved_for is not None
            and (self._saved_for == self._recipe_or_none())
        )

    # -- equivalent command -----------------------------------------------------------------------

    def command_line(self) -> str:
        """``shieldwright build RECIPE`` once the recipe is saved (and current), else the options table's
        flags for the recipe ("" while a choice is missing)."""
        return equivalent_command(self._recipe_or_none(), self._saved_path())[0]

    def _saved_path(self) -> Path | None:
        return self.saved_recipe if self.recipe_is_saved() else None

    def _on_command_toggled(self, on: bool) -> None:
        self.command_panel.setVisible(on)
        self.command_button.setText(
            self.tr("Hide e&quivalent command") if on else self.tr("Show e&quivalent command")
        )
        if on:
            self._show_command()

    def _show_command(self) -> None:
        try:
            recipe, error = self.recipe(), ""
        except ShieldwrightError as exc:
            recipe, error = None, exc.one_line()
        self.command_panel.set_command(*equivalent_command(recipe, self._saved_path(), error))
