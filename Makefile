# Vigil: two commands do everything on a fresh machine.
#   make run    create .venv if needed, install, start Vigil on the simulated monitor
#   make test   same environment: the import rules, the type-check baseline, every test headless
#   make test-fast  the tests that need no real time, subprocess or service (a quick loop)
#   make bench  benchmarks: prints figures, writes bench/results.json
#   make soak   24 simulated hours in the monitoring window (SOAK_HOURS=2 for a short run): memory, threads, refcount
#   make sessions     the sessions make run recorded (vigil sessions on its database)
#   make screenshots  the screenshots of docs/screenshots at 1366x768, 1920x1080, 2560x1440 (needs xvfb, openbox)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SCENARIO ?= normal
SPEED ?= 1
DB ?= var/vigil-dev.sqlite
PYTEST_ARGS ?=
SOAK_HOURS ?= 24

.PHONY: run sessions test test-fast check bench soak screenshots venv clean

# Compiled modules (and pytest's assertion-rewritten test modules) are cached in __pycache__ even
# where the environment turns that off: otherwise every test worker compiles the whole tree again on
# every run (about 4 s of CPU per worker).
unexport PYTHONDONTWRITEBYTECODE

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Vigil needs Python 3.11 or newer: run make PYTHON=python3.12 ...")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	@mkdir -p $(dir $(DB))
	$(BIN)/vigil run --device 'sim://?scenario=$(SCENARIO)&speed=$(SPEED)' --db $(DB)

# the same database as make run (or: export VIGIL_DB=$$PWD/var/vigil-dev.sqlite, then vigil sessions, vigil export …)
sessions: $(STAMP)
	$(BIN)/vigil sessions --db $(DB)

test: check
	@tools/ensure-services
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -n 2 -q -m "not slow and not window" $(PYTEST_ARGS)

# the layers' import rules and the type-check baseline (docs/architecture.md)
check: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python tools/check-types

bench: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m bench

# not part of make test: about 6 minutes for 24 h (docs/reliability.md#soak)
soak: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m bench.soak --hours $(SOAK_HOURS)

screenshots: $(STAMP)
	for size in 1366x768 1920x1080 2560x1440; do \
		xvfb-run -a -s "-screen 0 $${size}x24" sh -c 'openbox & sleep 1; $(BIN)/python docs/make_screenshots.py' || exit 1; \
	done

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis build *.egg-info
