"""A template build: the recipe (what to build), the pipeline and its steps (how), the manifest and the
verification of an exported template. See docs/architecture.md."""
