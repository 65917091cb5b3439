#!/usr/bin/env bash
# Every GPU check in one command, for a one-GPU machine that has CUDA PyTorch and transformers but
# no package index: the other dependencies come installed in .whl/site.tar.xz (pip install --target
# of their cp312 manylinux wheels, tarred: xz packs Ray's binaries a third smaller than the wheel's
# zip, which a 64 MiB transfer needs; Ray's Java jars, RLlib, Serve and dashboard client left out), and the end-to-end run's
# model, corpus and finished ingest stage in .gpu/ffgpu (benchmarks/gpu_end_to_end.py prepare
# --root /tmp/ffgpu, then copied there). Results land in $OUT (default /tmp/gpu_out).
#
#   bash benchmarks/gpu_check.sh
#
# Each step has its own time limit, so one that hangs leaves the others their time.
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 RAY_AUTH_MODE=disabled PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
nvidia-smi -L
if [ -d .whl ]; then
  mkdir -p /tmp/site && tar -xJf .whl/site.tar.xz -C /tmp/site || exit 1
  # polars is only read by ingest's duplicate pass, which ran where the run was prepared.
  mkdir -p /tmp/stub/polars
  echo 'def __getattr__(name): raise ImportError("polars is not installed here; ingest ran where the run was prepared")' \
    > /tmp/stub/polars/__init__.py
  export PYTHONPATH=$PWD:/tmp/site:/tmp/stub
else
  export PYTHONPATH=$PWD
fi
python3 -c "import ray, deepspeed, torch, transformers; print('ray', ray.__version__, 'deepspeed', deepspeed.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)"

echo "== pytest -m gpu"
timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu 2>&1 | tee "$OUT/pytest_gpu.log" | tail -15

echo "== end to end"
rm -rf /tmp/ffgpu && cp -a .gpu/ffgpu /tmp/ffgpu
timeout 240 python3 benchmarks/gpu_end_to_end.py gpu --root /tmp/ffgpu --out "$OUT/gpu_end_to_end.json" > "$OUT/e2e.log" 2>&1
echo "rc $?"; grep -v "Dataset\|logging_progress\|^\s*$" "$OUT/e2e.log" | tail -40

echo "== scoring throughput"
timeout 150 python3 benchmarks/gpu_scoring.py --rows 2048 --max-tokens 65536 131072 --out "$OUT/gpu_scoring.json" 2>&1 | tail -5

echo "== training throughput"
timeout 150 python3 benchmarks/gpu_training.py --steps 10 --out "$OUT/gpu_training.json" 2>&1 | tail -8
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv
