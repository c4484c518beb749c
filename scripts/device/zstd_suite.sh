#!/usr/bin/env bash
# Runs on a GPU machine: nvCOMP from the carried wheel, the build with it, the zstd GPU tests
# (and memcheck on one), decode speed of zstd against rANS on two layers of the 8B shape, and
# the engine on four-layer 8B-shaped files of both coders.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/codecllm-out}
mkdir -p "$OUT" /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/nvidia_libnvcomp*.whl
export PYTHONPATH=/tmp/site
TARGETS="test_gpu codecllm engine_bench nvcomp_bench" OUT=$OUT scripts/device/gpu_suite.sh build || exit 1
grep -i nvcomp "$OUT/configure.log"
b=build-dev
$b/tests/test_gpu --gtest_filter='GpuDecode.Zstd*:CudaEngineZstd.*:GpuDecode.EdgeCases:CudaEngineBias.*' 2>&1 \
  | grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|Expected|Which is|tests ran" | head -30
timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $b/tests/test_gpu \
  --gtest_filter='GpuDecode.ZstdCorrupt*:CudaEngineZstd.*' 2>&1 | grep -E "ERROR SUMMARY|PASSED|FAILED" | tail -3
for c in rans zstd; do
  $b/tools/codecllm synth --shape llama3-8b --layers 2 --codec $c -o /tmp/l2-$c.cllm -q
  echo "-- 8B shape, 2 layers + embeddings + lm_head, $c"; $b/tools/codecllm bench-decode /tmp/l2-$c.cllm | tail -6
done
echo "-- nvCOMP's codecs on the same tensors"; $b/bench/nvcomp_bench /tmp/l2-rans.cllm 5
for c in rans zstd; do
  $b/tools/codecllm synth --shape llama3-8b --layers 4 --codec $c -o /tmp/l4-$c.cllm -q
  echo "-- engine, 8B shape with 4 layers, $c"; timeout 90 $b/bench/engine_bench /tmp/l4-$c.cllm gpu@1,gpu-compressed@1,host@1 16 2>&1 | tail -6
done
