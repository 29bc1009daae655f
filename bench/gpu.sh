#!/usr/bin/env bash
# The GPU checks of this suite, as one script for a short lease on a machine with an NVIDIA
# GPU (see docs/performance.md). Pure-Python packages the machine lacks travel as wheels in
# .whl/ (git-ignored): hydra-core, omegaconf and antlr4-python3-runtime, made with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl hydra-core omegaconf
#   pip wheel --no-deps -w .whl antlr4-python3-runtime==4.9.3
# Do not carry flax or optax: the machine's own match its jax (flax 0.12.8 fails on jax 0.11).
# Writes logs and JSON into ${OUT:-results/bench/gpu}:
#   1. the scan tests of every method on the GPU, the Pallas kernel among them (-k pallas);
#   2. bench/scan.py at 32 x 1024 x 128 (the CPU shape) and at Path-X's 32 x 16384 x 256
#      (planar_pallas against planar_associative: the LRU's path, auto's choice on GPUs);
#   3. bench/lra_steps.py: steps/s at the LRU paper's LRA shapes, associative vs pallas;
#   4. the same with trainer.precision=bf16;
#   5. bench/length_scaling.py: planned memory and tokens/s of the Path-X step, 1k to 16k.
# Two parts, each inside one 10-minute device call: `bash bench/gpu.sh core` (1-3) and
# `bash bench/gpu.sh extra` (4-5); no argument runs both.
set -u
PART=${1:-all}
OUT=${OUT:-results/bench/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/device.txt"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" | tee -a "$OUT/device.txt"
if [ "$PART" != extra ]; then
timeout 150 python3 -m pytest tests/test_scan.py -q -x -k pallas -p no:cacheprovider 2>&1 | tail -25 | tee "$OUT/pytest_pallas.log"
timeout 60 python3 bench/scan.py --out "$OUT/scan_1k.json" 2>&1 | tail -12 | tee "$OUT/scan_1k.log"
timeout 240 python3 bench/lra_steps.py --methods associative,pallas --repeats 10 \
  --out "$OUT/lra_steps.json" 2>&1 | grep -v Warning | tail -20 | tee "$OUT/lra_steps.log"
timeout 60 python3 bench/scan.py --time 16384 --state 256 --repeats 5 --out "$OUT/scan_16k.json" 2>&1 | tail -12 | tee "$OUT/scan_16k.log"
fi
if [ "$PART" != core ]; then
timeout 200 python3 bench/lra_steps.py --methods associative --precision bf16 --repeats 10 \
  --out "$OUT/lra_steps_bf16.json" 2>&1 | grep -v Warning | tail -10 | tee "$OUT/lra_steps_bf16.log"
timeout 200 python3 bench/length_scaling.py --batch 32 --layers 6 --methods associative --repeats 5 \
  --out "$OUT/length_scaling.json" 2>&1 | grep -v Warning | tail -8 | tee "$OUT/length_scaling.log"
fi
