"""What the wizard has chosen so far, Qt-free (it becomes the build Recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.disk.model import DiskLayout


@dataclass
class WizardState:
    """Choices made across pages. Pages write here; nothing here knows about Qt."""

    #: The base image the user opened (None until one was inspected successfully).
    image_path: Path | None = None
    #: What ``inspect_image`` found in it.
    layout: DiskLayout | None = None
    #: GPT partition numbers chosen for protection (encryption + catalog).
    protected: set[int] = field(default_factory=set)

    def set_image(self, path: Path | None, layout: DiskLayout | None) -> None:
        """A new image replaces the old one and resets the choices made about it to the defaults."""
        self.image_path = path
        self.layout = layout
        self.protected = (
            {p.number for p in layout.partitions if p.protectable and p.protect_by_default}
            if layout
            else set()
        )
