# The two commands of the README: `make run` and `make test`. Both set up what is missing first.
VENV := .venv
PY := $(VENV)/bin/python
DEMO := $(HOME)/.cache/shieldwright/demo-base.img

.PHONY: setup run test test-fast check lint bench screenshots demo-image clean dist deb

setup:
	@bash installer/setup.sh

# Rebuilt when the demo builder changes, so a cached image never lags behind the code.
$(DEMO): app/template/demo.py
	@$(PY) -m app demo-image --force $(DEMO)

demo-image: setup
	@$(MAKE) --no-print-directory $(DEMO)

run: demo-image
	@if [ -z "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
		echo "run: no display found; starting the wizard under xvfb-run (use a desktop session to see it)"; \
		xvfb-run -a $(PY) -m app $(DEMO); \
	else $(PY) -m app $(DEMO); fi

# The static checks: lint, layout, layers (import-linter) and types (mypy), all configured in pyproject.toml.
check: setup
	@$(PY) -m ruff check app wizard_pages tests benchmarks
	@$(PY) -m ruff format --check --quiet app wizard_pages tests benchmarks
	@out=$$($(VENV)/bin/lint-imports --no-cache 2>&1) || { echo "$$out"; exit 1; }
	@$(PY) -m mypy

test: check
	@QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

# The inner loop: the same checks, and every test except those that boot QEMU.
test-fast: check
	@QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not vm"

lint: check

bench: setup
	@for b in benchmarks/bench_*.py; do $(PY) $$b; done

screenshots: demo-image
	@QT_QPA_PLATFORM=offscreen $(PY) -m app.gui.screenshots docs/screenshots $(DEMO)
	@QT_QPA_PLATFORM=offscreen $(PY) -m app.gui.screenshots --theme dark docs/screenshots/dark $(DEMO)

# Packages, into dist/: the sdist and the wheel (C extensions included) built from it; the Debian 12 package
# (a private environment under /usr/lib/shieldwright, desktop file, metainfo, icons, man page). installer/.
dist: setup
	@$(PY) installer/dist.py

deb: setup
	@$(PY) installer/deb/build.py

clean:
	rm -rf $(VENV) .pytest_cache
