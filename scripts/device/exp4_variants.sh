#!/usr/bin/env bash
# Runs on a GPU machine: variants of the exp4 kernels side by side in one call, each a patch
# against the tree (made with `git diff main BRANCH -- src/cuda > .device-data/variants/NAME.patch`,
# carried with .device-data). For the tree as it is and then each patch in turn: an incremental
# build, the exp4 GPU tests (bit-identical products and decodes), and engine_bench on the
# Llama-3-8B shape (synthesized once, exp4 coding), batch 1 and 8 against `gpu` in the same run;
# the patch is taken back before the next. Results: $OUT/exp4-variants.jsonl, labelled by variant.
#   [OUT=dir] [RUNS=...] [TOKENS=n] [SANITIZE=1] scripts/device/exp4_variants.sh [NAME.patch ...]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/codecllm-out}
mkdir -p "$OUT"
b=build-dev
patches=("$@")
[ ${#patches[@]} -eq 0 ] && patches=(.device-data/variants/*.patch)
filter='GpuDecode.Exp4*:Exp4Gemv.*:CudaEngineExp4.*'
TARGETS="test_gpu codecllm engine_bench" OUT=$OUT scripts/device/gpu_suite.sh build || exit 1
$b/tools/codecllm synth --shape llama3-8b --codec exp4 -o /tmp/8b-exp4.cllm -q || exit 1

run_variant() {  # name
  echo "== variant $1"
  $b/tests/test_gpu --gtest_filter="$filter" 2>&1 | grep -E "^\[  (PASSED|FAILED) |Failure" | head -8
  if [ "${SANITIZE:-0}" = 1 ]; then
    for tool in memcheck racecheck; do
      timeout 240 compute-sanitizer --tool $tool --error-exitcode 9 $b/tests/test_gpu --gtest_filter="$filter" \
        >"$OUT/$1-$tool.log" 2>&1
      echo "$tool exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/$1-$tool.log" | tail -1)"
    done
  fi
  $b/bench/engine_bench /tmp/8b-exp4.cllm "${RUNS:-gpu@1,gpu-compressed@1,gpu-compressed@8}" "${TOKENS:-32}" \
    "$OUT/exp4-variants.jsonl" "llama3-8b-exp4-$1" 2>&1 | grep -E "^(gpu|gpu-compressed) "
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
