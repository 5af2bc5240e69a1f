# Two entry points a new user needs; both work on a fresh clone with nothing done first.
#   make demo   set up, provision MNIST, grade the bundled example, write its report
#   make test   set up (with the browser the report/PDF tests use) and run the test suite
#   make test-fast   the tests that start no kernel, browser, cluster or grading subprocess (under a minute)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast setup browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,cluster]"
	touch $(STAMP)

setup: $(STAMP)
	$(BIN)/grade data

demo: setup
	$(BIN)/grade examples/csci145-ps6-student.ipynb --seed 2026 --out examples/csci145-ps6-student.graded
	@echo "Open examples/csci145-ps6-student.graded/report.html in a browser."

browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v pdftotext >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils fonts-dejavu-extra >/dev/null; \
	  else \
	    echo "browser tests need Debian's chromium and poppler-utils (sudo apt-get install chromium poppler-utils); they will be skipped"; \
	  fi; \
	fi

test: setup browser
	$(BIN)/python -m pytest -n 2 -q -p no:cacheprovider tests

# Every check unit-tested on made-up observations, the reports, the CLI's parsing, the reference
# functions; tests marked slow (tests/conftest.py says which) are left to `make test`. One BLAS
# thread per worker (two workers on two cores: more threads only contend) and whole files per
# worker (a module's observations are built once).
test-fast: $(STAMP)
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	  $(BIN)/python -m pytest -n 2 --dist loadfile -q -p no:cacheprovider -m "not slow" tests

clean:
	rm -rf $(VENV) examples/*.graded
