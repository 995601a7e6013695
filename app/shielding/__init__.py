"""Shielding data: what a VM owner hands a hosting fabric so that VMs are provisioned from trusted templates
without the fabric's admins seeing the secrets (Microsoft's ``.pdk``, open and checkable with OpenSSL).

Guardians (owner key pairs, fabric certificates), volume ID qualifiers (which templates the data is for),
the encrypted payload and the ``.shd`` file (docs/formats/shielding-data.md). Qt-free.
"""
