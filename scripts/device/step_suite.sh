#!/usr/bin/env bash
# Runs on a GPU machine: the kernels of a batch-1 step of the CUDA engine (norm, attention,
# greedy pick, GEMV) and where a step spends its time on the Llama-3-8B shape (random weights).
# test: their GPU tests, then under compute-sanitizer memcheck and racecheck. profile: Nsight
# Compute times every kernel of a few steps of a 4-layer file one by one (no overlap, boost
# clocks, warm caches) and bench/step_kernels.py sums them per kernel and per step. bench:
# engine_bench times the steps as the engine runs them (one CUDA graph a step), on the 4-layer
# file and on the full 32 layers, with and without programmatic dependent launches.
#   [OUT=dir] [RUNS=gpu@1] [TOKENS=64] scripts/device/step_suite.sh [build] [test] [profile] [bench]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/codecllm-out}
mkdir -p "$OUT"
stages=${*:-build test profile bench}
has() { [[ " $stages " == *" $1 "* ]]; }
b=build-dev
if has build; then
  TARGETS="codecllm engine_bench test_gpu" OUT=$OUT scripts/device/gpu_suite.sh build || exit 1
fi
if has test; then
  filter='Shapes/Attention.*:GpuSampler.*:CudaEngineAttention.*:CudaEngineModes.*:CudaEngineBatch.*:CudaEngineOptions.*:CudaEngineBias.*:Shapes/GemvKernels.*'
  echo "== GPU tests"
  $b/tests/test_gpu --gtest_filter="$filter" >"$OUT/test_gpu.log" 2>&1
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran|Failure|Expected|Which is" "$OUT/test_gpu.log" | head -30
  for tool in memcheck racecheck; do
    timeout 240 compute-sanitizer --tool $tool --error-exitcode 9 $b/tests/test_gpu \
      --gtest_filter='Shapes/Attention.*:GpuSampler.SmallVocabulary:GpuSampler.OddVocabulary:CudaEngineBias.*' \
      >"$OUT/step-$tool.log" 2>&1
    echo "$tool exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/step-$tool.log" | tail -1)"
  done
fi
small=/tmp/8b-4layers.cllm
full=/tmp/8b.cllm
[ -f $small ] || $b/tools/codecllm synth --shape llama3-8b --layers 4 -o $small -q
if has profile; then
  echo "== Nsight Compute, every kernel of steps of the 4-layer file"
  timeout 300 ncu --graph-profiling node --cache-control none --clock-control none \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size,launch__block_size \
    --csv --print-units base --launch-count ${LAUNCHES:-800} \
    $b/bench/engine_bench $small gpu@1 8 >"$OUT/ncu-step.csv" 2>"$OUT/ncu-step.err"
  echo "ncu exit $?"
  python3 bench/step_kernels.py "$OUT/ncu-step.csv" | tee "$OUT/step-kernels.txt"
fi
if has bench; then
  [ -f $full ] || /usr/bin/time -f "synth %e s" $b/tools/codecllm synth --shape llama3-8b -o $full -q
  for f in $small $full; do
    echo "-- $f"
    $b/bench/engine_bench $f ${RUNS:-gpu@1} ${TOKENS:-64} "$OUT/step-bench.jsonl" "$(basename $f .cllm)" 2>&1 | tail -4
    CODECLLM_BENCH_SERIAL_LAUNCH=1 $b/bench/engine_bench $f gpu@1 ${TOKENS:-64} 2>&1 | tail -1 | sed 's/^/no PDL: /'
  done
fi
