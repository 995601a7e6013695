"""LUKS2 containers written offline, as an ordinary user: no device-mapper, no root.

From the bottom up: :mod:`~app.luks.xts` (bulk AES-XTS), :mod:`~app.luks.af` (the anti-forensic splitter),
:mod:`~app.luks.kdf` (keyslot KDFs), :mod:`~app.luks.header` (binary headers and JSON areas),
:mod:`~app.luks.container` (the whole header area), :mod:`~app.luks.relayout` (the plan for a disk),
:mod:`~app.luks.relaid_image` (executing it in one pass), :mod:`~app.luks.imageops` (the CLI's calls).
``cryptsetup`` is the judge of everything here in the tests.
"""
