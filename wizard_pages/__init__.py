"""One module per wizard page. A page edits the WizardState (the future Recipe) and calls the engine
through :class:`app.gui.tasks.TaskRunner`; it never parses bytes or touches an image itself."""
