#!/usr/bin/env bash
# Installs what the Python package needs to build and be tested, from PyPI (idempotent): torch
# (PyPI's build; its CUDA libraries are only loaded where a GPU is), transformers, safetensors,
# and the build tools scikit-build-core and nanobind, plus pytest.
set -euo pipefail
py=${PYTHON:-python3}
pkgs=(torch transformers safetensors tokenizers scikit-build-core nanobind pytest)
missing=()
for p in "${pkgs[@]}"; do "$py" -m pip show -q "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup_python: installing ${missing[*]}"
  # --break-system-packages: a distribution's own python3 refuses pip installs without it
  "$py" -m pip install -q --break-system-packages "${missing[@]}" 2>&1 | grep -v "Running pip as the 'root' user" || true
fi
