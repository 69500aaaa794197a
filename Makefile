# Two commands do all set-up on a fresh machine: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Torch is pinned to the wheels that lie on this machine's disk (a newer one would mean a multi-GB download).
TORCH := torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= demo-out

.PHONY: venv test demo bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,lite,elpv]' $(TORCH)
	touch $@

test: venv
	$(BIN)/python -m pytest -q

demo: venv
	bash scripts/demo.sh $(DEMO_OUT)

bench: venv
	$(BIN)/python benchmarks/extract.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
