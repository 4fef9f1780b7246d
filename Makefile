# airgrid — `make demo` runs the whole system on simulated sensors; `make test` runs the suite.
VENV   := .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3

.PHONY: setup debs venv demo test lint chaos bench clean

setup: debs venv

debs:
	@bash scripts/install-debs.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	@touch $@

demo: setup
	$(VENV)/bin/airgrid demo

# Two workers, whole test files each (a module's shared stack stays in one worker): most of
# the suite waits on real processes, so two files overlap well on two cores.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m tests.support.architecture
	$(PY) -m bench.render_results --check

# Every benchmark in its quick form (bench/catalog.py; about 15 minutes on 2 cores), each
# recorded in bench/results/ with its commit, date, machine and load; then bench/RESULTS.md
# is regenerated from the records and bench/notes/. `python -m bench.run_all --full` for
# the full forms, `--only NAME` for one bench.
bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .airgrid

chaos: setup
	$(PY) bench/chaos.py --devices 20 --seconds 300
