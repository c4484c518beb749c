#!/usr/bin/env bash
# Configures and builds into build/ (Release; CUDA when a toolkit is found). Extra arguments
# go to cmake, e.g. scripts/build.sh -DCMAKE_CUDA_ARCHITECTURES=90
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then export PATH=/usr/local/cuda/bin:$PATH; fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCODECLLM_WERROR=ON "$@" >/dev/null
ninja -C build
