# Two commands do all set-up on a fresh machine: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Torch is pinned to the wheels that lie on this machine's disk (a newer one would mean a multi-GB download).
TORCH := torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= demo-out

.PHONY: venv test demo bench fuzz clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,lite,elpv,onnx,explain]' $(TORCH)
	touch $@

test: venv
	$(BIN)/python -m pytest -q

demo: venv
	bash scripts/demo.sh $(DEMO_OUT)

# Every speed figure of issue 5 side by side (about 10 minutes on 2 cores); results go to benchmarks/RESULTS.md.
bench: venv
	$(BIN)/python benchmarks/bench.py

# The long fuzz run of the image, CSV and config readers (10,000 inputs each).
fuzz: venv
	$(BIN)/python fuzz/run.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
