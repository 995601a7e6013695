"""The Volume Signature Catalog (VSC): a signed list of the block hashes of a template's protected partitions.

A provisioning host trusts a template disk only if every block of its protected partitions hashes to what
the template's signer approved, the way Microsoft's Shielded VM flow uses its ``.vsc``. The format is ours
(Microsoft never published theirs) and is specified in ``docs/formats/vsc.md``:

- :mod:`app.catalog.format` - the catalog content (magic, JSON header, raw block digests), strict decoding,
  CMS signing and signature-checked reading; :mod:`app.catalog.signature` - the CMS envelope (strict CMS
  comes from :mod:`app.signing.cms`; the catalog adds that its signer must be embedded);
- :mod:`app.catalog.hasher` - the parallel block hasher (a thread pool; hashlib releases the GIL on large
  buffers), hole skipping, and a streaming sink so a writer can hash ciphertext as it writes it;
- :mod:`app.catalog.create` / :mod:`app.catalog.verify` - catalogue an image; check one against a catalog;
- :mod:`app.catalog.extract` - copy the catalog out of a template's ESP.

Nothing here imports Qt: the wizard page and the CLI both drive these functions.
"""
