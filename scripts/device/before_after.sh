#!/usr/bin/env bash
# Runs on a GPU machine: the engine table of two trees of the project on one model file, in
# turns (new, old, new, old), so that a change's speed is judged against the tree before it
# within one lease. OLD is a copy of the earlier tree (git archive REV | tar -x -C OLD); the
# new tree's build is gpu_suite.sh's (build-dev).
#   OLD=.device-data/old [SHAPE=llama3-8b MODES='lossless int8' RUNS=gpu@1,gpu-compressed@1,host@1 TOKENS=32] \
#     scripts/device/before_after.sh [build] [bench]
# Logs go to $OUT (default /tmp/codecllm-out); the last lines are a table of both trees' runs.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/codecllm-out}
OLD=${OLD:-.device-data/old}
mkdir -p "$OUT"
stages=${*:-build bench}
has() { [[ " $stages " == *" $1 "* ]]; }
deps=/tmp/deps

configure_and_build() {  # SOURCE BUILD-DIR LOG
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_PREFIX_PATH=$deps/usr -DXXHASH_LIBRARY=$deps/usr/lib/x86_64-linux-gnu/libxxhash.a \
    -DCODECLLM_WERROR=ON >"$3" 2>&1 && ninja -C "$2" codecllm engine_bench >>"$3" 2>&1
}

if has build; then
  mkdir -p $deps
  for f in .device-data/debs/*.deb; do dpkg -x "$f" $deps; done
  # A machine keeps build-old between calls, and a tree unpacked by git archive carries its commit's
  # file times, older than those objects: ninja would keep the last tree's build. So a different
  # tree (by content) starts from an empty build directory.
  stamp=$(cd "$OLD" && find . -type f -print0 | sort -z | xargs -0 md5sum | md5sum | cut -d' ' -f1)
  if [ "$(cat build-old/.tree-stamp 2>/dev/null)" != "$stamp" ]; then
    rm -rf build-old
    mkdir -p build-old
    echo "$stamp" >build-old/.tree-stamp
  fi
  configure_and_build "$OLD" build-old "$OUT/build-old.log" || { tail -30 "$OUT/build-old.log"; exit 1; }
  echo "== old tree built"
fi
if has bench; then
  for mode in ${MODES:-lossless}; do
    file=/tmp/ba-${SHAPE:-llama3-8b}-$mode.cllm
    [ -f "$file" ] || build-dev/tools/codecllm synth --shape "${SHAPE:-llama3-8b}" --mode "$mode" -o "$file" -q
    for round in 1 2; do
      for tree in new old; do
        echo "-- $tree tree, round $round, $mode" | tee -a "$OUT/before_after.txt"
        dir=build-dev; [ $tree = old ] && dir=build-old
        $dir/bench/engine_bench "$file" "${RUNS:-gpu@1,gpu-compressed@1,host@1}" "${TOKENS:-32}" \
          "$OUT/before_after-$tree.jsonl" "$tree $mode" 2>&1 | grep -vE "^(layer|decode scratch|staging|fixed|total|budget)" \
          | tee -a "$OUT/before_after.txt"
      done
    done
  done
fi
