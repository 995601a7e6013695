"""The PCR policy of a template being planned: the events and values of PCR 4, 7 and 11 before it is built.

The build (step 3) and the wizard's PCR Policy page ask the same question — what will the VM's vTPM
measure when the finished template boots on the target firmware — so both call :func:`predict_planned`:
the base image's ESP with the files this build installs written over it
(:func:`planned_esp_files`), its boot chain, and the firmware profile of ``[pcr]``. Without a profile only
PCR 11 (the UKI's stub) is predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.boot.uki import inspect_uki
from app.disk.esp import plan_esp_install
from app.disk.image import DiskImage, open_image
from app.disk.model import DiskLayout, Partition, Role
from app.errors import ShieldwrightError
from app.measure.chain import BootChain, chain_from_esp, open_esp
from app.measure.events import Event, replay
from app.measure.predict import PREDICTED_PCRS, Prediction, pcr11_events, predict_chain
from app.measure.profile import FirmwareProfile, load_profile
from app.template.recipe import BootOptions, PcrOptions

#: What each PCR of a policy holds and what changes it, for people (the page's checklist, the docs).
PCR_MEANINGS = {
    4: (
        "Boot applications",
        "the Authenticode hash of every EFI application started: shim and the UKI. A kernel, initrd or "
        "command-line update (a new UKI) changes it.",
    ),
    7: (
        "Secure Boot policy",
        "SecureBoot, PK, KEK, db and dbx, and the db entries that admitted each application. A db or dbx "
        "update, or a UKI signed by another certificate, changes it.",
    ),
    11: (
        "Unified kernel image",
        "each measured section of the UKI: kernel, initrd, command line, os-release. A kernel, initrd or "
        "command-line update changes it; systemd extends it again at each boot phase.",
    ),
}


@dataclass(frozen=True)
class PolicyPrediction:
    """The events and PCR values of a planned template: all three PCRs with a firmware profile, PCR 11
    alone without one (``prediction`` None)."""

    events: tuple[Event, ...]
    pcrs: dict[str, dict[int, str]]
    banks: tuple[str, ...]
    prediction: Prediction | None = None

    @property
    def predicted_pcrs(self) -> tuple[int, ...]:
        return PREDICTED_PCRS if self.prediction is not None else (11,)

    @property
    def chain(self) -> BootChain | None:
        return self.prediction.chain if self.prediction is not None else None

    @property
    def profile(self) -> FirmwareProfile | None:
        return self.prediction.profile if self.prediction is not None else None


def planned_esp_files(boot: BootOptions, uki_id: str, uki: bytes) -> dict[str, bytes]:
    """The boot files a build installs: the UKI, shim's fallback CSV, and the UKI again as
    ``\\EFI\\BOOT\\BOOTX64.EFI`` with ``boot.install_removable``."""
    files = plan_esp_install(uki_id, uki, boot.vendor_dir)
    if boot.install_removable:
        files["\\EFI\\BOOT\\BOOTX64.EFI"] = uki
    return files


def the_esp(layout: DiskLayout) -> Partition:
    """The one FAT EFI System Partition the UKI is installed into."""
    esps = [p for p in layout.partitions if p.role is Role.ESP]
    if len(esps) != 1 or esps[0].content != "fat":
        raise ShieldwrightError(
            "the base image has no FAT EFI System Partition to install the UKI into",
            "run `shieldwright inspect` on it",
        )
    return esps[0]


def predict_on_image(
    image: DiskImage, esp: Partition, sector_size: int, planned: dict[str, bytes], profile: FirmwareProfile,
    banks: Sequence[str],
) -> Prediction:  # fmt: skip
    """The chain the finished ESP will hold (``planned`` over the image's files) on ``profile``."""
    with open_esp(image, esp, sector_size, planned) as reader:
        return predict_chain(chain_from_esp(reader), profile, banks)


def predict_planned(
    image_path: str | Path,
    layout: DiskLayout,
    boot: BootOptions,
    uki_id: str,
    uki: bytes,
    policy: PcrOptions,
    banks: Sequence[str] | None = None,
) -> PolicyPrediction:
    """PCR 4, 7 and 11 of the template ``image_path`` would become with ``uki`` installed as ``boot`` says,
    on ``policy``'s firmware (PCR 11 alone without one), in ``banks`` (default: the policy's bank)."""
    use = tuple(dict.fromkeys(banks or (policy.bank,)))
    if policy.firmware is None:
        events = tuple(pcr11_events(inspect_uki(uki), use))
        return PolicyPrediction(events, replay(events, use, (11,)), use)
    profile = load_profile(*policy.firmware)
    planned = planned_esp_files(boot, uki_id, uki)
    with open_image(image_path) as image:
        prediction = predict_on_image(image, the_esp(layout), layout.sector_size, planned, profile, use)
    return PolicyPrediction(prediction.events, prediction.pcrs, use, prediction)
