"""Where a generate() step of a codecllm model spends its time, on the GPU machine (Nsight Systems
is not usable there; torch.profiler is): wall time per step, the CPU time of the block streamer's
hooks, and the busiest CPU operations and GPU kernels (with the GPU's busy time per step), for
one placement against plain transformers on the same checkpoint.

    python3 scripts/device/python_profile.py MODEL.cllm HF_DIR [--placement gpu-compressed] [--batch 1]
"""

import argparse
import time

import codecllm
import torch
import transformers
from torch.profiler import ProfilerActivity, profile


def timed_generate(model, batch, tokens):
    ids = torch.randint(100, 20000, (batch, 8), device="cuda")
    kw = {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False, "pad_token_id": 0}
    model.generate(ids, **kw)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    model.generate(ids, **kw)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / tokens, ids, kw


def hook_clock(streamer):
    """Wraps the streamer's per-block methods with a CPU clock; returns the dict they add to."""
    spent = {"_before": 0.0, "_release": 0.0, "calls": 0}
    for name in ("_before", "_release"):  # the pre-hook of every block, the forward hook of the last
        inner = getattr(streamer, name)

        def clocked(b, *rest, inner=inner, name=name):
            t0 = time.perf_counter()
            inner(b, *rest)
            spent[name] += time.perf_counter() - t0
            spent["calls"] += name == "_before"

        setattr(streamer, name, clocked)
    return spent


def profile_steps(model, ids, kw, tokens, label):
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        model.generate(ids, **{**kw, "max_new_tokens": tokens, "min_new_tokens": tokens})
        torch.cuda.synchronize()
    events = prof.key_averages()
    gpu_us = sum(e.self_device_time_total for e in events)
    print(f"-- {label}: GPU busy {gpu_us / tokens / 1e3:.2f} ms a step (kernels summed over all streams)")
    print(events.table(sort_by="self_device_time_total", row_limit=12, max_name_column_width=60))
    print(events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("hf_dir")
    p.add_argument("--placement", default="gpu-compressed")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--tokens", type=int, default=16)
    a = p.parse_args()

    ref = transformers.AutoModelForCausalLM.from_pretrained(a.hf_dir, dtype=torch.bfloat16, device_map="cuda")
    step, ids, kw = timed_generate(ref, a.batch, a.tokens)
    print(f"transformers: {step * 1e3:.2f} ms a step, batch {a.batch}")
    profile_steps(ref, ids, kw, 4, "transformers")
    del ref
    torch.cuda.empty_cache()

    model = codecllm.load_model(a.model, placement=a.placement)
    streamer = model._codecllm["streamer"]
    step, ids, kw = timed_generate(model, a.batch, a.tokens)
    print(f"codecllm {a.placement}: {step * 1e3:.2f} ms a step, batch {a.batch}")
    if streamer is not None:
        spent = hook_clock(streamer)
        t0 = time.perf_counter()
        model.generate(ids, **kw)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        print(
            f"hooks (CPU, per step): _before {spent['_before'] / a.tokens * 1e3:.2f} ms, _release "
            f"{spent['_release'] / a.tokens * 1e3:.2f} ms, {spent['calls'] / a.tokens:.0f} blocks; "
            f"wall {wall / a.tokens * 1e3:.2f} ms a step"
        )
    profile_steps(model, ids, kw, 4, f"codecllm {a.placement}")


if __name__ == "__main__":
    main()
