# Two commands do all set-up on a fresh machine: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Torch is pinned to the wheels that lie on this machine's disk (a newer one would mean a multi-GB download).
TORCH := torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= demo-out

.PHONY: venv test demo bench quality fuzz clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e '.[dev,lite,elpv,onnx,explain,serve]' $(TORCH)
	touch $@

test: venv
	$(BIN)/python -m pytest -q

demo: venv
	bash scripts/demo.sh $(DEMO_OUT)

# Every speed figure side by side (about 10 minutes on 2 cores): throughput (issue 5) and start-up (issue 10).
# Results go to benchmarks/RESULTS.md.
bench: venv
	$(BIN)/python benchmarks/bench.py
	$(BIN)/python benchmarks/startup.py

# Accuracy side by side (issue 11): a hand-written probe vs headstart on the same splits of ELPV, digits and
# Fashion-MNIST (from npm: needs `npm`);
# `$(BIN)/python benchmarks/quality.py --splits 2 --fast` is the quick check. Results: benchmarks/RESULTS.md.
quality: venv
	$(BIN)/python benchmarks/quality.py

# The long fuzz run of the image, CSV and config readers (10,000 inputs each).
fuzz: venv
	$(BIN)/python fuzz/run.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
