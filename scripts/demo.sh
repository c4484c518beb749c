#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, compress a model into a
# .cllm file, verify it bit for bit against its source, and generate text with it (on the GPU
# when there is one, else on the CPU).
#   scripts/demo.sh [MODEL] [PROMPT]
# MODEL: a Hugging Face directory or a llama2.c .bin. Default: ../shared/models/pycode24M,
# else ../shared/models/stories260K, else a small random-weight model generated here.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh >/dev/null
cli=build/tools/codecllm
mkdir -p out
model=${1:-}
prompt=${2:-}
if [ -z "$model" ]; then
  if [ -d ../shared/models/pycode24M ]; then
    model=../shared/models/pycode24M
    prompt=${prompt:-"class "}
  elif [ -f ../shared/models/stories260K/stories260K.bin ]; then
    model=../shared/models/stories260K/stories260K.bin
  fi
fi
if [ -n "$model" ]; then
  echo "== compressing $model (lossless, bit-exact)"
  $cli compress "$model" -o out/model.cllm
  echo "== verifying every tensor against the source"
  $cli verify out/model.cllm "$model"
else
  echo "== no model given and none in ../shared/models: generating a small random-weight model"
  $cli synth --shape tiny -o out/model.cllm
fi
$cli inspect out/model.cllm | tail -n 3
echo "== generating"
$cli run out/model.cllm -p "$prompt" -n 64
