"""Keystroke validators for the template name and version, asking the catalog engine.

"Valid" has one definition: :func:`app.catalog.format.check_template_name` and
:func:`~app.catalog.format.parse_version`, the rules ``shieldwright build`` applies. What a validator adds
is only the keystroke view: text that is not valid yet but can still become valid by typing on is
*Intermediate* (an empty name, ``1.0.``), anything else the engine refuses is *Invalid*.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QValidator

from app.catalog.format import CatalogError, check_template_name, parse_version
from app.template.recipe import DEFAULT_TEMPLATE_VERSION


def _accepted(check: Callable[[str], object], text: str) -> bool:
    try:
        check(text)
    except CatalogError:
        return False
    return True


def name_state(text: str) -> QValidator.State:
    """Acceptable when the engine accepts ``text``; Intermediate when one more letter would make it so."""
    if _accepted(check_template_name, text):
        return QValidator.State.Acceptable
    if _accepted(check_template_name, text + "x"):
        return QValidator.State.Intermediate
    return QValidator.State.Invalid


def version_state(text: str) -> QValidator.State:
    """Acceptable when the engine parses ``text``; Intermediate when typing on can still give a version
    it parses (an empty part taken as 0, the missing parts from the default version); else Invalid."""
    if _accepted(parse_version, text):
        return QValidator.State.Acceptable
    parts = text.split(".")
    completed = [p or "0" for p in parts] + DEFAULT_TEMPLATE_VERSION.split(".")[len(parts) :]
    if _accepted(parse_version, ".".join(completed)):
        return QValidator.State.Intermediate
    return QValidator.State.Invalid


class TemplateNameValidator(QValidator):
    """The engine's template name rule, keystroke by keystroke."""

    def validate(self, text: str, pos: int) -> QValidator.State:
        return name_state(text)


class VersionValidator(QValidator):
    """``a.b.c.d`` as the engine parses it (System.Version, as ``Protect-TemplateDisk`` takes it)."""

    def validate(self, text: str, pos: int) -> QValidator.State:
        return version_state(text)
