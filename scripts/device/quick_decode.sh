#!/usr/bin/env bash
# Runs on a GPU machine after `gpu_suite.sh build`: the decode figures of docs/BENCHMARKS.md in
# about a minute (synthetic 4096x14336 tensors at two chunk sizes, and whole layers of a
# two-layer Llama-3-8B-shaped file, lossless and int8), each next to a device-to-device copy of
# the same bytes.
set -u
b=build-dev/tools/codecllm
for cs in 131072 65536; do echo "-- chunk $cs"; $b bench-decode --synthetic --workdir /tmp --chunk-symbols $cs --iters 10 | grep -E "whole|proj"; done
$b synth --shape llama3-8b --layers 2 --mode lossless -o /tmp/l2.cllm -q && $b bench-decode /tmp/l2.cllm --iters 10 | grep -E "per layer|embed|whole|up_proj"
$b synth --shape llama3-8b --layers 2 --mode int8 -o /tmp/l2i.cllm -q && $b bench-decode /tmp/l2i.cllm --iters 10 | grep -E "per layer|embed|whole|up_proj"
