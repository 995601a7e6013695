"""TPM 2.0 for templates: a VM's SRK, PCR policies, secrets sealed offline to a vTPM, systemd's LUKS2 token.

Built on tpm2-pytss for every TPM structure and the duplication (TPM2_Import) format; Qt-free.
"""
