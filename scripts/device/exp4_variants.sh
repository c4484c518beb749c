#!/usr/bin/env bash
# Runs on a GPU machine: variants of the exp4 kernels side by side in one call, each a patch
# against the tree (made with `git diff main BRANCH -- src/cuda > .device-data/variants/NAME.patch`,
# carried with .device-data). For the tree as it is and then each patch in turn: an incremental
# build, the exp4 GPU tests (bit-identical products and decodes), and engine_bench on the
# Llama-3-8B shape (synthesized once, exp4 coding), batch 1 and 8 against `gpu` in the same run;
# the patch is taken back before the next. Results: $OUT/exp4-variants.jsonl, labelled by variant.
# SANITIZE=1 runs compute-sanitizer's memcheck and racecheck over the tests, on the tree only.
# PROFILE="KERNEL@PLACEMENT@BATCH ..." adds Nsight Compute on one launch of each named kernel in
# each variant: its time, DRAM and issue figures, and the reasons its warps stall, largest first.
#   [OUT=dir] [RUNS=...] [TOKENS=n] [SANITIZE=1] [PROFILE="exp4_gemv_kernel@gpu-compressed@1 ..."] \
#     scripts/device/exp4_variants.sh [NAME.patch ...]
# SOURCE=1 adds, for each profiled kernel of the tree, every SASS instruction's executed count
# ($OUT/sass-KERNEL-BATCH.csv.gz: where the kernel's instructions go).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/codecllm-out}
mkdir -p "$OUT"
b=build-dev
patches=("$@")
[ ${#patches[@]} -eq 0 ] && patches=(.device-data/variants/*.patch)
filter=${FILTER:-'GpuDecode.Exp4*:Exp4Gemv.*:Exp4Gemm.*:CudaEngineExp4.*:*DecodeGemv*:*GemmKernels*'}
TARGETS="test_gpu codecllm engine_bench" OUT=$OUT scripts/device/gpu_suite.sh build || exit 1
$b/tools/codecllm synth --shape llama3-8b --codec exp4 -o /tmp/8b-exp4.cllm -q || exit 1

run_variant() {  # name
  echo "== variant $1"
  $b/tests/test_gpu --gtest_filter="$filter" 2>&1 | grep -E "^\[  (PASSED|FAILED) |Failure" | head -8
  if [ "${SANITIZE:-0}" = 1 ] && [ "$1" = tree ]; then  # the tree as it is; a variant once it is merged
    for tool in memcheck racecheck; do
      timeout 240 compute-sanitizer --tool $tool --error-exitcode 9 $b/tests/test_gpu --gtest_filter="$filter" \
        >"$OUT/$1-$tool.log" 2>&1
      echo "$tool exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/$1-$tool.log" | tail -1)"
    done
  fi
  $b/bench/engine_bench /tmp/8b-exp4.cllm "${RUNS:-gpu@1,gpu-compressed@1,gpu-compressed@8}" "${TOKENS:-32}" \
    "$OUT/exp4-variants.jsonl" "llama3-8b-exp4-$1" 2>&1 | grep -E "^(gpu|gpu-compressed) "
  for item in ${PROFILE:-}; do
    IFS=@ read -r kernel placement batch <<<"$item"
    timeout 180 ncu --kernel-name regex:"$kernel" --launch-skip 200 --launch-count 1 --section SpeedOfLight \
      --section WarpStateStats --section InstructionStats --section LaunchStats --section Occupancy \
      --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
      $b/bench/engine_bench /tmp/8b-exp4.cllm "$placement@$batch" 4 >"$OUT/ncu-$1-$kernel-$batch.txt" 2>&1
    echo "  ncu $kernel $placement@$batch"
    grep -E "Duration|DRAM Throughput|Warp Cycles Per Issued|Issue Slots Busy|Registers Per|Achieved Occupancy|Executed Instructions " \
      "$OUT/ncu-$1-$kernel-$batch.txt"
    grep -E "issue_stalled_.*per_issue_active" "$OUT/ncu-$1-$kernel-$batch.txt" | awk '{print $NF, $1}' | sort -rn | head -5 |
      sed -E 's/smsp__average_warps_issue_stalled_(.*)_per_issue_active.ratio/\1/; s/^/    stall /'
    if [ "${SOURCE:-0}" = 1 ] && [ "$1" = tree ]; then
      timeout 180 ncu --kernel-name regex:"$kernel" --launch-skip 200 --launch-count 1 --section SourceCounters \
        -f -o "/tmp/src-$kernel-$batch" $b/bench/engine_bench /tmp/8b-exp4.cllm "$placement@$batch" 4 >/dev/null 2>&1
      ncu -i "/tmp/src-$kernel-$batch.ncu-rep" --page source --print-source sass --csv 2>&1 |
        gzip >"$OUT/sass-$kernel-$batch.csv.gz"
      echo "    sass counts: $(zcat "$OUT/sass-$kernel-$batch.csv.gz" | wc -l) lines"
    fi
  done
}

run_variant tree
for p in "${patches[@]}"; do
  name=$(basename "$p" .patch)
  if ! git apply "$p"; then
    echo "== variant $name: patch does not apply"
    continue
  fi
  if cmake --build $b --target test_gpu engine_bench -j"$(nproc)" >"$OUT/build-$name.log" 2>&1; then
    run_variant "$name"
  else
    echo "== variant $name: build failed"
    grep -E "error" "$OUT/build-$name.log" | head -5
  fi
  git apply -R "$p"
done
cmake --build $b --target test_gpu engine_bench -j"$(nproc)" >/dev/null 2>&1  # the tree as it was
