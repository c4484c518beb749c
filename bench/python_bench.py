#!/usr/bin/env python3
"""Generation speed and peak VRAM of the Python package against what a PyTorch user runs otherwise.

    python3 bench/python_bench.py MODEL.cllm [--batches 1,8] [--tokens 32] [--runs NAME,...] [--jsonl OUT]

MODEL.cllm is lossless; its int8 twin is made beside it when missing. The Hugging Face reference
is the lossless file written back by codecllm.decompress (bit-identical weights). Each run loads
one model, generates `--tokens` greedy tokens from an 8-token prompt at each batch size (one
warm-up generate first) and reports tokens/s, the weight bytes a step reads over its time (as a
fraction of a device-to-device copy measured in the same process) and peak VRAM (torch's
max_memory_allocated over the load and the runs). Runs:
  transformers          from_pretrained in BF16 (the reference), default dynamic cache
  transformers-static   the same with cache_implementation="static"
  gpu, gpu-compressed, host, int8-gpu-compressed   codecllm.load_model placements
  accelerate-offload    the BF16 model with accelerate.cpu_offload (weights in host RAM)
  dfloat11              DFloat11 (pip package dfloat11) where it is installed
"""

import argparse
import gc
import json
import os
import sys
import time

import codecllm
import torch
import transformers

RUNS = "transformers,transformers-static,gpu,gpu-compressed,int8-gpu-compressed,host,accelerate-offload"


def copy_gbps():
    """A device-to-device copy of 1 GiB, read + write, best of 10."""
    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    best = 1e9
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        b.copy_(a)
        e.record()
        e.synchronize()
        best = min(best, s.elapsed_time(e))
    del a, b
    return 2 * (1 << 30) / (best * 1e-3) / 1e9


def load(run, path, hf_dir):
    if run.startswith("transformers") or run == "accelerate-offload":
        model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.bfloat16)
        if run == "accelerate-offload":
            from accelerate import cpu_offload

            return cpu_offload(model.eval(), execution_device="cuda")
        return model.to("cuda").eval()
    if run == "dfloat11":
        from dfloat11 import DFloat11Model  # noqa: F401  (needs its own compressed checkpoint)

        raise RuntimeError("DFloat11 needs a checkpoint compressed by its own tools: not run here")
    if run.startswith("int8-"):
        return codecllm.load_model(path.replace(".cllm", "-int8.cllm"), device="cuda", placement=run[5:])
    return codecllm.load_model(path, device="cuda", placement=run)


def time_generate(model, batch, tokens, static):
    ids = torch.randint(3, 1000, (batch, 8), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    kw = {"do_sample": False, "min_new_tokens": tokens, "max_new_tokens": tokens, "pad_token_id": 0}
    if static:
        kw["cache_implementation"] = "static"
    with torch.no_grad():
        model.generate(ids, **{**kw, "min_new_tokens": 4, "max_new_tokens": 4})
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(ids, **kw)
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--runs", default=RUNS)
    p.add_argument("--jsonl")
    a = p.parse_args()
    int8 = a.model.replace(".cllm", "-int8.cllm")
    hf_dir = a.model.replace(".cllm", "-hf")
    if not os.path.exists(hf_dir):
        codecllm.decompress(a.model, hf_dir)
    if "int8" in a.runs and not os.path.exists(int8):
        codecllm.compress(hf_dir, int8, mode="int8", progress=False)
    weight_bytes = sum(t.decoded_bytes for t in codecllm.open(a.model).tensors if len(t.shape) == 2)
    d2d = copy_gbps()
    print(f"{a.model}: {weight_bytes / 2**30:.2f} GiB of matrices; device-to-device copy {d2d:.0f} GB/s")
    print(f"{'run':22s} {'batch':>5s} {'tok/s':>9s} {'ms/step':>8s} {'of copy':>8s} {'peak VRAM':>10s}")
    for run in a.runs.split(","):
        torch.cuda.reset_peak_memory_stats()
        try:
            model = load(run, a.model, hf_dir)
        except (ImportError, OSError, RuntimeError, ValueError) as e:  # reported, not fatal
            print(f"{run:22s} not run: {e}")
            continue
        for batch in map(int, a.batches.split(",")):
            seconds = time_generate(model, batch, a.tokens, run.endswith("static"))
            step = seconds / a.tokens
            row = {
                "run": run,
                "batch": batch,
                "tokens_per_s": batch * a.tokens / seconds,
                "ms_per_step": 1e3 * step,
                "of_copy": weight_bytes / step / 1e9 / d2d,
                "peak_vram": torch.cuda.max_memory_allocated(),
                "copy_gbps": d2d,
                "device": torch.cuda.get_device_name(),
            }
            print(
                f"{run:22s} {batch:5d} {row['tokens_per_s']:9.1f} {row['ms_per_step']:8.2f} "
                f"{100 * row['of_copy']:7.1f}% {row['peak_vram'] / 2**30:9.2f}G"
            )
            if a.jsonl:
                with open(a.jsonl, "a") as f:
                    f.write(json.dumps(row) + "\n")
        del model
        gc.collect()
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
