#!/usr/bin/env bash
# Runs on a GPU machine: the capped decode grid (GpuDecoder::set_blocks_per_sm) and nvCOMP's
# codecs per decoder layer. Builds with nvCOMP from the carried wheel (.device-data/whl-nvcomp),
# runs the GPU decode tests and compute-sanitizer over the capped grids, nvcomp_bench on a
# 4-layer 8B-shaped file, and engine_bench on the 8B shape with and without the cap (each run's
# ratio is to the first run of its batch in the same process).
#   [OUT=dir] [CAPS='0 3'] [RUNS=gpu-compressed@8,gpu-compressed@32] scripts/device/capped_decode_suite.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/codecllm-out}
mkdir -p "$OUT" /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .device-data/whl-nvcomp/*.whl
export PYTHONPATH=/tmp/site
TARGETS="test_gpu codecllm engine_bench nvcomp_bench" OUT=$OUT scripts/device/gpu_suite.sh build || exit 1
b=build-dev
echo "== GPU decode and engine tests"
$b/tests/test_gpu --gtest_filter='GpuDecode.*:CudaEngine*:CApi.*' 2>&1 \
  | grep -E "^\[  (PASSED|FAILED) |Failure|Expected|Which is|tests ran" | tail -12
for tool in memcheck racecheck; do
  timeout 150 compute-sanitizer --tool $tool --error-exitcode 9 $b/tests/test_gpu \
    --gtest_filter='GpuDecode.CappedGrid*:GpuDecode.LargeTensorsAndSmallChunks' >"$OUT/sanitizer-$tool.log" 2>&1
  echo "$tool exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-$tool.log" | tail -1)"
done
$b/tools/codecllm synth --shape llama3-8b --layers 4 -o /tmp/l4.cllm -q
echo "== nvCOMP's codecs on the same tensors (4-layer 8B shape)"
$b/bench/nvcomp_bench /tmp/l4.cllm 5 | tee "$OUT/nvcomp_bench.txt"
$b/tools/codecllm synth --shape llama3-8b -o /tmp/l8b.cllm -q
for cap in ${CAPS:-0 3}; do
  echo "== engine_bench, 8B shape, decode blocks per SM: $cap (0: as many as fit)"
  CODECLLM_BENCH_DECODE_BLOCKS_PER_SM=$cap timeout 200 $b/bench/engine_bench /tmp/l8b.cllm \
    ${RUNS:-gpu@32,gpu-compressed@8,gpu-compressed@32} 32 "$OUT/engine-cap$cap.jsonl" 2>&1 | tail -6
done
