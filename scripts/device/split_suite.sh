#!/usr/bin/env bash
# Runs on a machine of two or more GPUs: a model split across GPUs (--gpus / --devices,
# src/engine/cuda_split.cpp). The split's tests (logits bit-identical to one engine, on the
# devices in turns), then engine_bench on the Llama-3-8B shape on one GPU and split across two
# in the same run (the split's cost, placement by placement), then the Llama-3-70B shape across
# two GPUs, BF16 `gpu` against lossless `gpu-compressed`. Results: $OUT/split.jsonl.
#   [OUT=dir] [TOKENS=n] scripts/device/split_suite.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/codecllm-out}
mkdir -p "$OUT"
b=build-dev
nvidia-smi --query-gpu=index,name,memory.total --format=csv | tee "$OUT/gpus.txt"
nvidia-smi topo -m >>"$OUT/gpus.txt" 2>&1
TARGETS="test_gpu codecllm engine_bench" OUT=$OUT scripts/device/gpu_suite.sh build || exit 1
$b/tests/test_gpu --gtest_filter='CudaEngineSplit.*:CudaEngine*.EveryPlacement*' 2>&1 | grep -E "^\[  (PASSED|FAILED) |Failure" | head
timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 $b/tests/test_gpu --gtest_filter='CudaEngineSplit.*' \
  >"$OUT/split-memcheck.log" 2>&1
echo "memcheck exit $? $(grep -E 'ERROR SUMMARY' "$OUT/split-memcheck.log" | tail -1)"
$b/tools/codecllm synth --shape llama3-8b -o /tmp/8b.cllm -q || exit 1
$b/bench/engine_bench /tmp/8b.cllm \
  gpu@1,gpu@1*2,gpu-compressed@1,gpu-compressed@1*2,gpu@8,gpu@8*2,gpu-compressed@8,gpu-compressed@8*2 \
  "${TOKENS:-32}" "$OUT/split.jsonl" llama3-8b 2>&1 | grep -E "^(gpu|gpu-compressed) "
$b/tools/codecllm synth --shape llama3-70b -o /tmp/70b.cllm -q || exit 1
$b/bench/engine_bench /tmp/70b.cllm gpu@1*2,gpu-compressed@1*2,gpu@8*2,gpu-compressed@8*2 "${TOKENS:-32}" \
  "$OUT/split.jsonl" llama3-70b 2>&1 | grep -E "^(gpu|gpu-compressed) "
