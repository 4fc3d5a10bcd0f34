# The two set-up commands of the README: `make run` (the workflow on the embedded demo, then its
# HTML report) and `make test`. Both install into .venv first; nothing is reinstalled unless a pin
# changed.
VENV ?= .venv
STAMP := $(VENV)/.installed
CORES ?= all
REPORT ?= results/report.html

.PHONY: run test install lint evidence clean-results

run: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) $(ARGS)
	$(VENV)/bin/snakemake --report $(REPORT) $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(ARGS)

install: $(STAMP)

# config/evidence.yaml from nothing, its files copied into docs/evidence/ (scripts/evidence.sh).
evidence: $(STAMP)
	CORES=$(CORES) VENV=$(VENV) bash scripts/evidence.sh

# Run by CI before the tests: ruff (lint and format), mypy on src/comcl ([tool.mypy] in pyproject.toml), snakefmt
# and snakemake --lint; `ruff check --fix .`, `ruff format .` and `snakefmt .` fix most of what it finds.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/snakefmt --check .
	$(VENV)/bin/snakemake --lint

$(STAMP): requirements.lock pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV)
	touch $@

clean-results:
	rm -rf results .snakemake
