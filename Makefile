# Every target works on a fresh machine with nothing but Python 3.11 installed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RAY_AUTH_MODE := disabled

.PHONY: install test test-slow sweep studies lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 2; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# two workers (CI has two cores), each test module in one of them (tests/conftest.py)
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

test-slow: install
	$(BIN)/python -m pytest -q -m slow

sweep: install
	$(BIN)/python -m dse.sweep hardware=chip_a strategy=split

# every study's sweep (resumed where done), figures and README table: python -m dse.studies NAME for one
# (an experiment preset without a folder in studies/ is not a study)
studies: install
	for s in $$(ls dse/conf/experiment | sed 's/\.yaml$$//'); do [ -d studies/$$s ] || continue; \
		$(BIN)/python -m dse.studies $$s || exit $$?; done

lint: install
	$(BIN)/ruff check dse tests bench

clean:
	rm -rf $(VENV) results outputs multirun
