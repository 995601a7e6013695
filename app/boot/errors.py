"""Error types of the boot package (UKIs, kernels, stubs, PCR 11 prediction).

They subclass :class:`app.errors.ShieldwrightError`, so the CLI prints them as one line and the GUI as a
dialog; callers that care (the wizard's boot page) can tell "this kernel is not a bzImage" apart from
"this stub cannot be used" without parsing messages.
"""

from __future__ import annotations

from app.errors import ShieldwrightError


class UkiError(ShieldwrightError):
    """A UKI cannot be built from these inputs, or a file is not a usable UKI or stub."""


class KernelFormatError(UkiError):
    """The kernel is not an x86 bzImage (a vmlinux ELF, a compressed archive, an arm64 Image, …)."""


class PcrPredictionError(UkiError):
    """PCR 11 cannot be predicted for this UKI (unknown stub, sections whose measurement we do not model)."""
