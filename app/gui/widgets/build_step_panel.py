"""The progress panel for a build, whose steps count in different units (bytes, or only a share).

The shared :class:`~app.gui.widgets.progress_panel.ProgressPanel` (bar, numbers, two-stage Cancel) fixes
its unit when a task starts; a build changes it from one step to the next.
"""

from __future__ import annotations

from app.gui.widgets.progress_panel import ProgressPanel


class BuildStepPanel(ProgressPanel):
    """The shared progress panel, for a build whose steps count in different units."""

    def set_unit(self, unit: str) -> None:
        """``"bytes"`` (sizes and a rate), ``"items"`` (plain "k of n") or ``"percent"`` (the share only),
        for the step now running."""
        self._unit = unit
