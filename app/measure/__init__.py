"""Measured boot: the TPM event model, TCG event logs, UEFI variable stores, and the PCR 4/7/11 prediction for
a template's boot chain (firmware → shim → UKI). See docs/architecture.md and docs/formats/."""
