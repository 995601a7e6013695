"""The Qt face of Shieldwright: application bootstrap, the wizard, shared widgets and Qt models.

The only package that imports Qt. PySide6 is pinned to 6.11.3: 6.12.0 drops references to None/True
on every void call and signal emit under CPython 3.11 and aborts the interpreter within seconds
(measured; tests/gui/test_qt_binding.py guards against a regression when the pin is bumped).
"""
