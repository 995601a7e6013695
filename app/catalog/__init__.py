"""The Volume Signature Catalog (VSC): a signed list of the block hashes of a template's protected partitions.

A provisioning host trusts a template disk only if every block of its protected partitions hashes to what
the template's signer approved, as in Microsoft's Shielded VM flow. The format is ours, specified in
``docs/formats/vsc.md``: :mod:`~app.catalog.format` (encoding, signing, reading), :mod:`~app.catalog.hasher`
(parallel and streaming block hashing), :mod:`~app.catalog.create`, :mod:`~app.catalog.verify` and
:mod:`~app.catalog.extract` (the catalog out of a template's ESP).
"""
