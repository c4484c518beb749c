#!/usr/bin/env bash
# Runs on a GPU machine: the exp4 coding's GPU tests (decode and fused product bit-identical,
# engine in every placement) under memcheck and racecheck, then the engine on the Llama-3-8B
# shape (random weights): rANS gpu and gpu-compressed against exp4 gpu-compressed, batch 1 and 8.
#   [OUT=dir] [CODECS='rans exp4'] [RUNS_RANS=...] [RUNS_EXP4=...] [TOKENS=n] scripts/device/exp4_suite.sh [build] [test] [bench] [profile]
# (profile: Nsight Compute on one fused exp4 product and one BF16 GEMV of the 8B-shaped engine)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/codecllm-out}
mkdir -p "$OUT"
stages=${*:-build test bench}
has() { [[ " $stages " == *" $1 "* ]]; }
b=build-dev
if has build; then
  TARGETS="test_gpu codecllm engine_bench" OUT=$OUT scripts/device/gpu_suite.sh build || exit 1
fi
filter='GpuDecode.Exp4*:Exp4Gemv.*:CudaEngineExp4.*'
if has test; then
  echo "== exp4 GPU tests"
  $b/tests/test_gpu --gtest_filter="$filter" 2>&1 | grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|Expected|Which is|tests ran" | head -30
  for tool in memcheck racecheck; do
    timeout 240 compute-sanitizer --tool $tool --error-exitcode 9 $b/tests/test_gpu --gtest_filter="$filter" \
      >"$OUT/exp4-$tool.log" 2>&1
    echo "$tool exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/exp4-$tool.log" | tail -1)"
  done
fi
if has bench; then
  for c in ${CODECS:-rans exp4}; do
    /usr/bin/time -f "synth %e s, %M KiB" $b/tools/codecllm synth --shape llama3-8b --codec $c -o /tmp/8b-$c.cllm -q
    ls -l /tmp/8b-$c.cllm
  done
  [ -f /tmp/8b-rans.cllm ] && echo "-- engine, Llama-3-8B shape, rANS" && $b/bench/engine_bench /tmp/8b-rans.cllm ${RUNS_RANS:-gpu@1,gpu-compressed@1,gpu@8,gpu-compressed@8} ${TOKENS:-32} \
    "$OUT/exp4-8b.jsonl" llama3-8b-rans 2>&1 | tail -12
  echo "-- engine, Llama-3-8B shape, exp4"
  $b/bench/engine_bench /tmp/8b-exp4.cllm ${RUNS_EXP4:-gpu@1,gpu-compressed@1,gpu@8,gpu-compressed@8} ${TOKENS:-32} \
    "$OUT/exp4-8b.jsonl" llama3-8b-exp4 2>&1 | tail -12
fi
if has profile; then
  for k in ${PROFILE:-exp4_gemv_kernel gemv_kernel}; do
    f=/tmp/8b-exp4.cllm  # its gpu placement holds the decoded BF16 weights the GEMV reads
    p=gpu-compressed@1; [ $k = gemv_kernel ] && p=gpu@1
    timeout 180 ncu --kernel-name regex:"${k}" --launch-skip 200 --launch-count 1 --section SpeedOfLight \
      --section MemoryWorkloadAnalysis --section WarpStateStats --section ComputeWorkloadAnalysis --section InstructionStats --section Occupancy --section LaunchStats \
      --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
      $b/bench/engine_bench $f $p 4 >"$OUT/ncu-$k.txt" 2>&1
    grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Achieved Occupancy|Registers Per|Grid Size|Block Size|Stall|Warp Cycles Per Issued|Issued Warp|Executed Ipc|Issue Slots|Active Threads|Executed Instructions " "$OUT/ncu-$k.txt" | head -30
    echo "   stalls (cycles a warp waits per issued instruction, by reason; largest first):"
    grep -E "issue_stalled_.*per_issue_active" "$OUT/ncu-$k.txt" | awk '{print $NF, $1}' | sort -rn | head -6 |
      sed -E 's/smsp__average_warps_issue_stalled_(.*)_per_issue_active.ratio/\1/; s/^/     /'
  done
fi
