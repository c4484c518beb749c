#!/usr/bin/env bash
# Runs the CUDA engine split across GPUs (--gpus / --devices, src/engine/cuda_split.cpp): the
# split's tests (logits bit-identical to one engine, with the shares on the devices in turn) and
# compute-sanitizer memcheck, then engine_bench on the Llama-3-8B shape, one engine against the
# split in the same run (the split's cost, placement by placement), then the Llama-3-70B shape
# across two GPUs, BF16 `gpu` against lossless `gpu-compressed`. Results: $OUT/split.jsonl.
# On a machine of one GPU both shares run on GPU 0 in turn (CODECLLM_BENCH_ONE_GPU): the split's
# code path and its cost without a second device; the 70B rows need two GPUs and are skipped.
#   [OUT=dir] [TOKENS=n] scripts/device/split_suite.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/codecllm-out}
mkdir -p "$OUT"
b=build-dev
gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
nvidia-smi --query-gpu=index,name,memory.total --format=csv | tee "$OUT/gpus.txt"
nvidia-smi topo -m >>"$OUT/gpus.txt" 2>&1
TARGETS="test_gpu codecllm engine_bench" OUT=$OUT scripts/device/gpu_suite.sh build || exit 1
$b/tests/test_gpu --gtest_filter='CudaEngineSplit.*:CudaEngine*' >"$OUT/test-split.log" 2>&1
grep -E -A3 "^\[  (PASSED|FAILED) |tests ran|Failure" "$OUT/test-split.log" | head -40 | tee -a "$OUT/summary.txt"
timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 $b/tests/test_gpu --gtest_filter='CudaEngineSplit.*' \
  >"$OUT/split-memcheck.log" 2>&1
echo "memcheck exit $? $(grep -E 'ERROR SUMMARY' "$OUT/split-memcheck.log" | tail -1)" | tee -a "$OUT/summary.txt"
[ "$gpus" -ge 2 ] || export CODECLLM_BENCH_ONE_GPU=1
$b/tools/codecllm synth --shape llama3-8b -o /tmp/8b.cllm -q || exit 1
$b/bench/engine_bench /tmp/8b.cllm \
  gpu@1,gpu@1*2,gpu-compressed@1,gpu-compressed@1*2,gpu@8,gpu@8*2,gpu-compressed@8,gpu-compressed@8*2 \
  "${TOKENS:-32}" "$OUT/split.jsonl" llama3-8b-shaped 2>&1 | grep -E "^(gpu|gpu-compressed) |rror" | tee -a "$OUT/summary.txt"
rm -f /tmp/8b.cllm
[ "$gpus" -ge 2 ] || { echo "one GPU: the 70B split across two GPUs is not run" | tee -a "$OUT/summary.txt"; exit 0; }
$b/tools/codecllm synth --shape llama3-70b -o /tmp/70b.cllm -q || exit 1
$b/bench/engine_bench /tmp/70b.cllm gpu@1*2,gpu-compressed@1*2,gpu@8*2,gpu-compressed@8*2 "${TOKENS:-32}" \
  "$OUT/split.jsonl" llama3-70b-shaped 2>&1 | grep -E "^(gpu|gpu-compressed) |rror" | tee -a "$OUT/summary.txt"
