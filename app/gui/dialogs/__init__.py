"""Dialogs of the wizard. All are non-blocking: callers ``open()`` them and react to their signals,
never ``exec()`` them (a nested event loop inside a qasync slot breaks the loop, gui.md §4)."""
