#!/usr/bin/env bash
# Runs on a GPU machine: Nsight Compute on single launches of the engine's kernels inside
# engine_bench on the Llama-3-8B shape (random weights), to show what bounds each: its time,
# DRAM and issue figures, occupancy, and the reasons its warps stall, largest first. Each item is
# KERNEL_REGEX@CODEC@PLACEMENT@BATCH; CODEC exp4, rans (rANS with 16384-symbol chunks, the
# batched-serving choice) or int8 (int8 mode, rANS). Full reports in $OUT/ncu-*.txt.
#   [OUT=dir] [SKIP=100] [TOKENS=16] scripts/device/profile_products.sh [build] ITEM ...
# e.g. exp4_gemm_kernel@exp4@gpu-compressed@8 decode_chunks@rans@gpu-compressed@32
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/codecllm-out}
mkdir -p "$OUT"
b=build-dev
if [ "${1:-}" = build ]; then
  shift
  TARGETS="codecllm engine_bench" OUT=$OUT scripts/device/gpu_suite.sh build || exit 1
fi
for item in "$@"; do
  IFS=@ read -r kernel codec placement batch <<<"$item"
  file=/tmp/8b-$codec.cllm
  if [ ! -f $file ]; then
    args="--codec $codec"
    [ "$codec" = rans ] && args="$args --chunk-symbols 16384"
    [ "$codec" = int8 ] && args="--mode int8"
    $b/tools/codecllm synth --shape llama3-8b $args -o $file -q || exit 1
  fi
  name="$kernel-$codec-$placement-$batch"
  echo "== $name"
  timeout 200 ncu --kernel-name regex:"$kernel" --launch-skip "${SKIP:-100}" --launch-count 1 --section SpeedOfLight \
    --section MemoryWorkloadAnalysis --section WarpStateStats --section ComputeWorkloadAnalysis \
    --section InstructionStats --section Occupancy --section LaunchStats \
    --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
    $b/bench/engine_bench $file "$placement@$batch" "${TOKENS:-16}" >"$OUT/ncu-$name.txt" 2>&1
  grep -E "^  [a-z_].*\(|Duration|DRAM Throughput|Memory Throughput|L2 Cache Throughput|Compute \(SM\)|Registers Per|Grid Size|Block Size|Achieved Occupancy|Theoretical Occupancy|Warp Cycles Per Issued|Issue Slots Busy|Executed Ipc Active|Executed Instructions |Dynamic Shared" \
    "$OUT/ncu-$name.txt" | head -20
  echo "   stalls (cycles a warp waits per issued instruction, by reason; largest first):"
  grep -E "issue_stalled_.*per_issue_active" "$OUT/ncu-$name.txt" | awk '{print $NF, $1}' | sort -rn | head -6 |
    sed -E 's/smsp__average_warps_issue_stalled_(.*)_per_issue_active.ratio/\1/; s/^/     /'
done
