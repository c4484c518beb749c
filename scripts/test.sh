#!/usr/bin/env bash
# Everything CI checks, from a fresh machine: install, build with warnings as errors (CUDA
# code included when a toolkit is present), unit tests, unit tests again under ASan+UBSan,
# each libFuzzer target for FUZZ_SECONDS (default 60) from its small seed corpus, and the
# Python package (pip install ., then its pytest suite).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)
fuzz_seconds=${FUZZ_SECONDS:-60}

echo "== release build and unit tests"
scripts/build.sh
log=$(mktemp)
ctest --test-dir build --output-on-failure -j "$jobs" | tee "$log"
passed=$(grep -oE 'out of [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')

echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCODECLLM_SANITIZE=ON -DCODECLLM_CUDA=OFF \
  -DCODECLLM_BENCH=OFF >/dev/null
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-asan --output-on-failure -j "$jobs" \
  | tee "$log"
passed=$((passed + $(grep -oE 'out of [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')))

echo "== fuzzers, ${fuzz_seconds}s each"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DCODECLLM_FUZZ=ON -DCODECLLM_TESTS=OFF -DCODECLLM_BENCH=OFF -DCODECLLM_CUDA=OFF >/dev/null
ninja -C build-fuzz
for target in build-fuzz/fuzz/fuzz_*; do
  name=$(basename "$target")
  corpus=fuzz/corpus/${name#fuzz_}
  mkdir -p "$corpus"  # an empty seed folder is not tracked by git
  work=$(mktemp -d)
  echo "-- $name (${fuzz_seconds}s, seeds from $corpus)"
  if ! "$target" -max_total_time="$fuzz_seconds" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$work/" "$work" "$corpus" >"$work.log" 2>&1; then
    tail -n 60 "$work.log"
    echo "fuzzer $name failed; the input that broke it is under $work"
    exit 1
  fi
  grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$work.log" || true
  rm -rf "$work" "$work.log"
  passed=$((passed + 1))
done
echo "== Python package: pip install . (CPU-only native core: the CUDA sources were built above), pytest"
scripts/setup_python.sh
if ! CMAKE_ARGS="-DCODECLLM_CUDA=OFF" CMAKE_BUILD_PARALLEL_LEVEL="$jobs" \
    python3 -m pip install --break-system-packages --no-build-isolation --no-deps . >"$log" 2>&1; then
  tail -n 40 "$log"
  echo "pip install . failed"
  exit 1
fi
python3 -m pytest -q -p no:cacheprovider python/tests | tee "$log"
passed=$((passed + $(grep -oE '[0-9]+ passed' "$log" | tail -1 | grep -oE '[0-9]+')))
rm -f "$log"
# One closing line for every check: release tests + sanitizer tests + fuzzers + Python tests (any failure
# above has already stopped the script with a non-zero exit).
echo "checks: $passed passed, 0 failed"
