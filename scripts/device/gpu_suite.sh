#!/usr/bin/env bash
# Runs on a GPU machine: build, GPU tests, compute-sanitizer, decode benchmarks. Logs go to
# $OUT (default /tmp/codecllm-out). Build dependencies that machine lacks travel as Debian
# packages in .device-data/debs (unpacked to /tmp/deps), real models in .device-data/models.
#   [TARGETS='codecllm test_gpu'] [SHAPE=llama3-8b MODES='lossless int8' SYNTH_ARGS='--chunk-symbols 65536'
#    RUNS=gpu@1,host@8 TOKENS=16 SERIAL_RUNS=gpu@1 NO_SCRATCH_RUNS=gpu-compressed@1] \
#     scripts/device/gpu_suite.sh [build] [test] [sanitize] [bench] [engine] [big] [profile]
# (default: every stage; TARGETS limits the build, and then only test_gpu runs in the test stage)
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/codecllm-out}
mkdir -p "$OUT"
stages=${*:-build test sanitize bench engine big}
deps=/tmp/deps
models=$PWD/.device-data/models
build=build-dev
has() { [[ " $stages " == *" $1 "* ]]; }
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }

if has build; then
  mkdir -p $deps
  for f in .device-data/debs/*.deb; do dpkg -x "$f" $deps; done
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee -a "$OUT/summary.txt"
  log "build"
  cmake -S . -B $build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_PREFIX_PATH=$deps/usr -DXXHASH_LIBRARY=$deps/usr/lib/x86_64-linux-gnu/libxxhash.a -DZSTD_LIBRARY=$deps/usr/lib/x86_64-linux-gnu/libzstd.a \
    -DCODECLLM_SHARED_MODELS="$models" -DCODECLLM_WERROR=ON >"$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
  ninja -C $build ${TARGETS:-} >"$OUT/build.log" 2>&1 || { grep -E "error|FAILED" -A3 "$OUT/build.log" | head -60; exit 1; }
  log "build ok"
fi
if has test; then
  log "GPU tests"
  $build/tests/test_gpu >"$OUT/test_gpu.log" 2>&1
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran" "$OUT/test_gpu.log" | tail -20 | tee -a "$OUT/summary.txt"
  grep -q "FAILED" "$OUT/test_gpu.log" && grep -B3 -A12 "Failure" "$OUT/test_gpu.log" | head -80
  if [ -z "${TARGETS:-}" ]; then
    ctest --test-dir $build -j 8 --output-on-failure >"$OUT/ctest.log" 2>&1
    grep -E "tests passed|tests failed|\*\*\*Failed" "$OUT/ctest.log" | tail -20 | tee -a "$OUT/summary.txt"
  fi
fi
if has sanitize; then
  log "compute-sanitizer"
  for tool in ${SANITIZERS:-memcheck racecheck}; do
    compute-sanitizer --tool $tool --error-exitcode 9 $build/tests/test_gpu \
      --gtest_filter='GpuDecode.EdgeCases:GpuDecode.CorruptChunkIsReported:GpuDecode.ClassTable*:GpuDecode.Bf16ExponentsOnly:CudaEngineSplit.*:CApi.*:Models/RealModels.*/0:CudaEngineBatch.*:CudaEngineHost.*:Shapes/GemvKernels.*:CudaEngineOptions.*:GpuSampler.SmallVocabulary:Layouts/DecodeGemv.*:DecodeGemvLimits.*:CudaEngineNoScratch.*:CudaEngineBias.*:CudaEnginePlan.*' \
      >"$OUT/sanitizer-$tool.log" 2>&1
    echo "$tool exit $? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer-$tool.log" | tail -1)" | tee -a "$OUT/summary.txt"
    grep -m1 -A14 -E "^========= (Invalid|Error|Race|Program hit)" "$OUT/sanitizer-$tool.log"
  done
fi
if has bench; then
  log "bench-decode"
  for cs in 131072 65536 16384; do
    echo "-- synthetic, chunk $cs symbols" | tee -a "$OUT/bench.txt"
    $build/tools/codecllm bench-decode --synthetic --workdir /tmp --chunk-symbols $cs | tee -a "$OUT/bench.txt"
  done
  for mode in lossless int8; do
    $build/tools/codecllm compress "$models/pycode24M" -o /tmp/py-$mode.cllm --mode $mode --one-table -q >/dev/null
    $build/tools/codecllm compress "$models/stories260K/stories260K.bin" -o /tmp/st-$mode.cllm --mode $mode -q >/dev/null
    for m in py st; do
      echo "-- $m $mode" | tee -a "$OUT/bench.txt"
      $build/tools/codecllm bench-decode /tmp/$m-$mode.cllm | tee -a "$OUT/bench.txt"
    done
  done
  $build/examples/c_api_decode /tmp/st-int8.cllm | tail -3 | tee -a "$OUT/bench.txt"
  # Class-table exponents (embeddings, lm_head; the default) through their own kernel.
  $build/tools/codecllm compress "$models/pycode24M" -o /tmp/py-classes.cllm -q >/dev/null
  echo "-- py lossless, class tables (default)" | tee -a "$OUT/bench.txt"
  $build/tools/codecllm bench-decode /tmp/py-classes.cllm | tee -a "$OUT/bench.txt"
  # Whole layers of the 8B shape in one launch each: the decode the engine runs per layer.
  for mode in lossless int8; do
    $build/tools/codecllm synth --shape llama3-8b --layers 2 --mode $mode -o /tmp/l2-$mode.cllm -q
    echo "-- llama3-8b shape, 2 layers, $mode" | tee -a "$OUT/bench.txt"
    $build/tools/codecllm bench-decode /tmp/l2-$mode.cllm | tee -a "$OUT/bench.txt"
    rm -f /tmp/l2-$mode.cllm
  done
fi
if has engine; then
  log "engine: tokens/s and VRAM per placement"
  py=$models/pycode24M
  for mode in lossless int8; do
    $build/tools/codecllm compress "$py" -o /tmp/py-$mode.cllm --mode $mode -q >/dev/null
    $build/bench/engine_bench /tmp/py-$mode.cllm gpu@1,gpu-compressed@1,host@1,host-raw@1,host@8,host-raw@8 128 \
      "$OUT/placements-pycode.jsonl" pycode24M 2>&1 | tee -a "$OUT/engine.txt"
    # Perplexity on the uncompressed placement: every placement gives bit-identical logits.
    [ "${PPL:-1}" = 1 ] && $build/tools/codecllm perplexity /tmp/py-$mode.cllm --text "$py/val.txt" --device cuda --placement gpu \
      | tee -a "$OUT/engine.txt"
  done
  $build/tools/codecllm run /tmp/py-lossless.cllm -p "class " -n 48 --placement host 2>&1 | tail -4 | tee -a "$OUT/engine.txt"
  $build/tools/codecllm run /tmp/py-int8.cllm -p "def " -p "import " -n 32 --placement host-raw 2>&1 | tail -6 | tee -a "$OUT/engine.txt"
fi
if has big; then
  shape=${SHAPE:-llama3-8b}
  for mode in ${MODES:-lossless int8}; do
    echo "-- synthetic $shape $mode" | tee -a "$OUT/engine.txt"
    /usr/bin/time -v $build/tools/codecllm synth --shape $shape --mode $mode ${SYNTH_ARGS:-} -o /tmp/big-$mode.cllm \
      2>"$OUT/synth-$mode.log" \
      | tee -a "$OUT/engine.txt"
    grep -E "Maximum resident|Elapsed" "$OUT/synth-$mode.log" | tee -a "$OUT/engine.txt"
    $build/bench/engine_bench /tmp/big-$mode.cllm ${RUNS:-gpu@1,gpu-compressed@1,host@1,host-raw@1,host@8,host-raw@8,host@32,host-raw@32,auto/24GiB@1} \
      ${TOKENS:-16} "$OUT/placements-$shape.jsonl" "$shape-shaped" 2>&1 | tee -a "$OUT/engine.txt"
    # The same file with serial kernel launches (no programmatic dependent launch), for its gain.
    [ -n "${SERIAL_RUNS:-}" ] && CODECLLM_BENCH_SERIAL_LAUNCH=1 $build/bench/engine_bench /tmp/big-$mode.cllm \
      $SERIAL_RUNS ${TOKENS:-16} 2>&1 | sed 's/^/serial launches: /' | tee -a "$OUT/engine.txt"
    # gpu-compressed multiplying straight from the compressed weights (no decode scratch).
    [ -n "${NO_SCRATCH_RUNS:-}" ] && CODECLLM_BENCH_NO_SCRATCH=1 $build/bench/engine_bench /tmp/big-$mode.cllm \
      $NO_SCRATCH_RUNS ${TOKENS:-16} 2>&1 | sed 's/^/no scratch: /' | tee -a "$OUT/engine.txt"
    rm -f /tmp/big-$mode.cllm
  done
fi
if has profile; then
  log "ncu: one decode of the synthetic BF16 tensors (${PROFILE_CHUNK:=131072}-symbol chunks)"
  $build/tools/codecllm bench-decode --synthetic --workdir /tmp --chunk-symbols $PROFILE_CHUNK --iters 3 >/dev/null
  ncu --kernel-name regex:decode_chunks --launch-skip 2 --launch-count 1 --section WarpStateStats \
    --section SchedulerStats --section Occupancy --section LaunchStats --section SourceCounters \
    $build/tools/codecllm bench-decode /tmp/synthetic-lossless.cllm --iters 1 >"$OUT/ncu.txt" 2>&1
  grep -v "^==PROF==" "$OUT/ncu.txt" | head -${NCU_LINES:-160}
  # Per-instruction stall samples of the hot loop: the SASS lines with the most samples.
  ncu --kernel-name regex:decode_chunks --launch-skip 2 --launch-count 1 --section WarpStateStats \
    --section SourceCounters --page source --print-source sass --csv \
    $build/tools/codecllm bench-decode /tmp/synthetic-lossless.cllm --iters 1 >"$OUT/ncu-sass.csv" 2>&1
fi
log "done"
