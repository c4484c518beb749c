set -u
b=build-dev/tools/codecllm
for cs in 131072 65536; do echo "-- chunk $cs"; $b bench-decode --synthetic --workdir /tmp --chunk-symbols $cs --iters 10 | grep -E "whole|proj"; done
$b synth --shape llama3-8b --layers 2 --mode lossless -o /tmp/l2.cllm -q && $b bench-decode /tmp/l2.cllm --iters 10 | grep -E "per layer|embed|whole|up_proj"
