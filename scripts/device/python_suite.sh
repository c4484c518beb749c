#!/usr/bin/env bash
# Runs on a GPU machine: builds the Python package with CUDA (pip install --target), runs its
# pytest suite on the GPU, and bench/python_bench.py on pycode24M and on a Llama-3-8B-shaped
# model with random weights. Build dependencies travel as Debian packages in .device-data/debs,
# DFloat11 and its one missing dependency as wheels in .whl, real models in .device-data/models.
# Stage profile (after bench8b, which makes the 8B files): scripts/device/python_profile.py on them, batch
# $PROFILE_BATCH (default 1), with this script's PYTHONPATH.
# SITE: where the package is installed (default /tmp/site; another for a second tree in the same lease).
#   [OUT=dir] [RUNS=...] [RUNS_8B=...] [ROUNDS=n] scripts/device/python_suite.sh [build] [test] [bench] [bench8b] [profile]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/codecllm-out}
mkdir -p "$OUT"
stages=${*:-build test bench bench8b}
deps=/tmp/deps
site=${SITE:-/tmp/site}
models=$PWD/.device-data/models
has() { [[ " $stages " == *" $1 "* ]]; }
log() { echo "== $* ($(date +%T))" | tee -a "$OUT/summary.txt"; }
export PYTHONPATH=$site PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

if has build; then
  log "pip install . (CUDA, sm_90)"
  mkdir -p $deps $site
  for f in .device-data/debs/*.deb; do dpkg -x "$f" $deps; done
  if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $site .whl/*.whl
  fi
  # A shared module needs position-independent code: the system's libzstd.so.1 where there is one (Debian's
  # libzstd.a is not built with -fPIC).
  zstd=$(ls /usr/lib/x86_64-linux-gnu/libzstd.so.1 2>/dev/null || echo $deps/usr/lib/x86_64-linux-gnu/libzstd.a)
  CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_PREFIX_PATH=$deps/usr \
-DXXHASH_LIBRARY=$deps/usr/lib/x86_64-linux-gnu/libxxhash.a -DZSTD_LIBRARY=$zstd" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    python3 -m pip install -v --no-build-isolation --no-deps --upgrade --target $site . >"$OUT/pip.log" 2>&1 \
    || { grep -E "error|Error" -A3 "$OUT/pip.log" | head -60; exit 1; }
  python3 -c "import codecllm; print('has_cuda', codecllm._native.has_cuda)" | tee -a "$OUT/summary.txt"
fi
if has test; then
  log "pytest python/tests (GPU)"
  python3 -m pytest -q -p no:cacheprovider -rs python/tests >"$OUT/pytest.log" 2>&1
  tail -n 25 "$OUT/pytest.log" | tee -a "$OUT/summary.txt"
fi
if has bench; then
  log "python_bench: pycode24M"
  mkdir -p /tmp/py
  [ -f /tmp/py/pycode24M.cllm ] ||
    python3 -c "import codecllm; print(codecllm.compress('$models/pycode24M', '/tmp/py/pycode24M.cllm', progress=False))"
  python3 bench/python_bench.py /tmp/py/pycode24M.cllm ${RUNS:+--runs $RUNS} --jsonl "$OUT/python_bench.jsonl" \
    2>"$OUT/bench-py.err" | tee -a "$OUT/summary.txt"
  tail -n 5 "$OUT/bench-py.err"
fi
if has bench8b; then
  log "python_bench: Llama-3-8B shape"
  mkdir -p /tmp/l8b
  python3 bench/python_bench.py /tmp/l8b/llama3-8b.cllm --synthesize llama3-8b --slow-tokens 4 ${RUNS_8B:+--runs $RUNS_8B} ${ROUNDS:+--rounds $ROUNDS} \
    --jsonl "$OUT/python_bench.jsonl" 2>"$OUT/bench-8b.err" | tee -a "$OUT/summary.txt"
  tail -n 5 "$OUT/bench-8b.err"
fi
if has profile; then
  log "python_profile: Llama-3-8B shape, batch ${PROFILE_BATCH:-1}"
  python3 scripts/device/python_profile.py /tmp/l8b/llama3-8b.cllm /tmp/l8b/llama3-8b-hf --batch ${PROFILE_BATCH:-1} \
    >"$OUT/profile.txt" 2>&1
  grep -E "ms a step|hooks|GPU busy|head alone|Error" "$OUT/profile.txt" | tee -a "$OUT/summary.txt"
fi
log "done"
