"""The steps of a template build, which :mod:`app.template.pipeline` runs in order: one module each."""
