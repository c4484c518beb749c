#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian 12 machine (idempotent).
# The CUDA toolkit is optional: when nvcc is present the GPU code is built too.
set -euo pipefail
pkgs=(cmake ninja-build g++ clang libclang-rt-14-dev libgtest-dev libgmock-dev libbenchmark-dev
      libxxhash-dev libzstd-dev nlohmann-json3-dev libcli11-dev python3 python3-matplotlib)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# nvCOMP (optional, from PyPI) decodes zstd planes on the GPU; worth installing only where the
# CUDA code is built. CMake finds it through python3.
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  if ! python3 -c "import nvidia.libnvcomp" >/dev/null 2>&1; then
    echo "setup: installing nvidia-libnvcomp-cu13 (pip)"
    python3 -m pip install -q --break-system-packages nvidia-libnvcomp-cu13 2>&1 | grep -v "as the 'root' user" || true
  fi
fi
