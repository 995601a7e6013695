"""LUKS2 containers written offline, as an ordinary user: no device-mapper, no root.

The modules, from the bottom up:

- :mod:`app.luks.xts` -- bulk AES-XTS with plain64 IVs (the data segment and the keyslot areas);
- :mod:`app.luks.af` -- the anti-forensic splitter that spreads a volume key over 4000 stripes;
- :mod:`app.luks.kdf` -- argon2id / pbkdf2 keyslot KDFs and a calibration like cryptsetup's benchmark;
- :mod:`app.luks.header` -- the binary headers and JSON areas (parse with checksum validation, and write);
- :mod:`app.luks.container` -- the whole header area: create, unlock, add/remove keyslots, tokens,
  systemd-style recovery keys.

``cryptsetup`` is the judge of everything here: the tests check our output with ``luksDump``,
``open --test-passphrase`` and ``--dump-volume-key``, and read containers that cryptsetup made.
"""
