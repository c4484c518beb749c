"""Where a generate() step of a codecllm model spends its time, on the GPU machine (Nsight Systems
is not usable there; torch.profiler is): wall time per step, the CPU time of the block streamer's
hooks, and the busiest CPU operations and GPU kernels (with the GPU's busy time per step), for
one placement against plain transformers on the same checkpoint; and each model's output head timed alone.

    python3 scripts/device/python_profile.py MODEL.cllm HF_DIR [--placement gpu-compressed] [--fused] [--batch 1]
                                             [--skip-reference]
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


def hook_clock(model):
    """Wraps the hooks of the model's decoder blocks (the first block's Python one, the others' native calls, the
    last block's forward hook) with a CPU clock; returns the dict they add to."""
    spent = {"pre": 0.0, "post": 0.0, "calls": 0}
    for layer in model.model.layers:
        for hooks, key in ((layer._forward_pre_hooks, "pre"), (layer._forward_hooks, "post")):
            for k, hook in list(hooks.items()):

                def clocked(*args, hook=hook, key=key):
                    t0 = time.perf_counter()
                    result = hook(*args)
                    spent[key] += time.perf_counter() - t0
                    spent["calls"] += key == "pre"
                    return result

                hooks[k] = clocked  # same key: a hook registered with_kwargs is still called with them
    return spent


def gemv_clock(streamer, repeats=50):
    """The first block's fused products one by one, each repeated: GPU time (CUDA events) and CPU time a call."""
    b = streamer.blocks[0]
    for j, m in enumerate(b.modules):
        x = torch.randn(1, m.in_features, dtype=torch.bfloat16, device="cuda")
        y = torch.empty(1, m.out_features, dtype=torch.bfloat16, device="cuda")
        stream = torch.cuda.current_stream().cuda_stream
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        b.decoder.gemv(j, x.data_ptr(), y.data_ptr(), stream)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        start.record()
        for _ in range(repeats):
            b.decoder.gemv(j, x.data_ptr(), y.data_ptr(), stream)
        end.record()
        cpu = (time.perf_counter() - t0) / repeats
        torch.cuda.synchronize()
        gpu = start.elapsed_time(end) / repeats * 1e3
        gbps = m.in_features * m.out_features * 2 / (gpu * 1e3)
        print(
            f"fused product {tuple(m.weight.shape)}: {gpu:.1f} us GPU ({gbps:.0f} GB/s of BF16), {cpu * 1e6:.1f} us CPU"
        )


def head_clock(model, batch, label, repeats=20):
    """The output head alone on a step's input (batch rows of one token), CUDA events around `repeats` calls: its
    GPU time a call and the bandwidth its weight implies, with the weight's layout (what cuBLAS picks a kernel by)."""
    head = model.get_output_embeddings()
    w = head.weight
    x = torch.randn(batch, 1, w.shape[1], dtype=w.dtype, device="cuda")
    head(x)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        head(x)
    end.record()
    torch.cuda.synchronize()
    us = start.elapsed_time(end) / repeats * 1e3
    print(
        f"{label} output head alone: {us:.1f} us a call ({w.numel() * w.element_size() / us / 1e3:.0f} GB/s); "
        f"weight {tuple(w.shape)} {w.dtype} on {w.device}, strides {w.stride()}, address % 256 = {w.data_ptr() % 256}"
    )


def profile_steps(model, ids, kw, tokens, label):
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        model.generate(ids, **{**kw, "max_new_tokens": tokens, "min_new_tokens": tokens})
        torch.cuda.synchronize()
    events = prof.key_averages()
    gpu_us = sum(e.self_device_time_total for e in events)
    print(f"-- {label}: GPU busy {gpu_us / tokens / 1e3:.2f} ms a step (kernels summed over all streams)")
    print(events.table(sort_by="self_device_time_total", row_limit=20, max_name_column_width=60))
    print(events.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("hf_dir")
    p.add_argument("--placement", default="gpu-compressed")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--fused", action="store_true", help="load_model(fused_products=True)")
    p.add_argument("--skip-reference", action="store_true", help="profile the codecllm model only")
    a = p.parse_args()

    if not a.skip_reference:
        ref = transformers.AutoModelForCausalLM.from_pretrained(a.hf_dir, dtype=torch.bfloat16, device_map="cuda")
        step, ids, kw = timed_generate(ref, a.batch, a.tokens)
        print(f"transformers: {step * 1e3:.2f} ms a step, batch {a.batch}")
        head_clock(ref, a.batch, "transformers")
        profile_steps(ref, ids, kw, 4, "transformers")
        del ref
        torch.cuda.empty_cache()

    model = codecllm.load_model(a.model, placement=a.placement, fused_products=a.fused)
    streamer = model._codecllm["streamer"]
    step, ids, kw = timed_generate(model, a.batch, a.tokens)
    print(f"codecllm {a.placement}: {step * 1e3:.2f} ms a step, batch {a.batch}")
    head_clock(model, a.batch, f"codecllm {a.placement}")
    if streamer is not None:
        spent = hook_clock(model)
        t0 = time.perf_counter()
        model.generate(ids, **kw)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        print(
            f"hooks (CPU, per step): blocks' pre-hooks {spent['pre'] / a.tokens * 1e3:.3f} ms, last block's "
            f"forward hook {spent['post'] / a.tokens * 1e3:.3f} ms, {spent['calls'] / a.tokens:.0f} blocks; "
            f"wall {wall / a.tokens * 1e3:.2f} ms a step"
        )
    if a.fused:
        gemv_clock(streamer)
    profile_steps(model, ids, kw, 4, f"codecllm {a.placement}")


if __name__ == "__main__":
    main()
