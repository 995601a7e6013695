"""The parts of the template build that :mod:`app.template.pipeline` strings together.

One module per concern, each small enough to read in one sitting: :mod:`.progress` (what a GUI or a
terminal polls), :mod:`.boot` (which kernel, which UKI), :mod:`.keys` (LUKS2 headers and keyslots),
:mod:`.sinks` (catalog hashing on its own thread during the streaming pass), :mod:`.staging` (temporary
files, atomic commit, hashing files), :mod:`.export` (raw, VHDX, VHD, qcow2) and :mod:`.report` (the
human-readable HTML report). Qt-free, like the rest of the engine.
"""
