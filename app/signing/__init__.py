"""Keys, certificates and signatures: the one place that loads keys, makes certificates and signs.

Modules: ``keys`` (load PEM/DER/PKCS#12, generate, write 0600), ``certificates`` (inspect + findings),
``esl`` (EFI signature lists), ``signer`` (the Signer abstraction), ``der`` (a small DER codec),
``cms`` (CMS SignedData), ``authenticode`` (PE/COFF digests and signatures). Qt-free.
"""
