#!/usr/bin/env python3
"""Generation speed and peak VRAM of the Python package against what a PyTorch user runs otherwise.

    python3 bench/python_bench.py MODEL.cllm [--synthesize llama3-8b] [--batches 1,8] [--tokens 32]
                                  [--runs NAME,...] [--rounds N] [--jsonl OUT]

MODEL.cllm is lossless (with --synthesize, a model of that shape with random weights is made
first: transformers' own initialization on the GPU, saved, compressed). Its int8 twin is made
beside it when missing. The Hugging Face reference is the lossless file written back by
codecllm.decompress (bit-identical weights). Each run loads one model, generates --tokens
greedy tokens from an 8-token prompt at each batch size (best of --repeats, after a warm-up generate of
the same length) and
reports tokens/s, the matrix bytes a step reads over its time as a fraction of a device-to-device
copy measured in the same process, and peak VRAM over the load and the runs: torch's
max_memory_allocated, plus, for codecllm models, what the native decoders hold outside torch
(codecllm_memory()["peak_vram"]). With --rounds N every run's model is loaded at once and the runs are timed
in turn N times (one generate a row), and each is also reported by the median over rounds of its ratio to the
transformers row of the same round: the host CPU that bounds generate() can drift within a process. Runs (a "-static" suffix: cache_implementation="static"):
  transformers          from_pretrained in BF16 (the reference), default dynamic cache
  gpu, gpu-compressed, host, int8-gpu-compressed   codecllm.load_model placements
  gpu-compressed-fused  gpu-compressed with fused_products=True (batch 1 multiplies from the compressed weights)
  gpu-compressed-samestream  gpu-compressed with priority_stream=False (forwards on the caller's stream)
  RUN+KEY=VALUE[+...]   any run with load_model keywords, e.g. gpu-compressed+decode_blocks_per_sm=3
  accelerate-offload    the BF16 model under accelerate.cpu_offload (weights in host RAM)
  dfloat11              DFloat11 (pip package dfloat11), compressed by its own compress_model
                        (pure Python: only for models under --dfloat11-max-params)
"""

import argparse
import contextlib
import gc
import json
import os
import subprocess
import sys
import time

import codecllm
import torch
import transformers

RUNS = (
    "transformers,transformers-static,gpu,gpu-compressed,gpu-compressed-static,gpu-compressed-fused,"
    "int8-gpu-compressed,host,"
    "accelerate-offload,dfloat11"
)
SLOW = ("accelerate-offload", "host")  # runs bound by PCIe: --slow-tokens tokens
SHAPES = {
    "llama3-8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
    }
}
# Which submodules DFloat11 compresses, in its compress_model's terms (Llama names).
DF11_LLAMA = {
    r"lm_head": [],
    r"model\.embed_tokens": [],
    r"model\.layers\.\d+": [
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    ],
}


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


def synthesize(shape, path, chunk_symbols=None):
    """A model of a real shape with transformers' own random initialization (made on the GPU), saved, compressed."""
    hf_dir = path.replace(".cllm", "-hf")
    config = transformers.LlamaConfig(**SHAPES[shape])
    t0 = time.perf_counter()
    with torch.device("cuda"):
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(hf_dir)
    del model
    torch.cuda.empty_cache()
    summary = codecllm.compress(hf_dir, path, progress=False, chunk_symbols=chunk_symbols)
    print(f"synthesized {shape} in {time.perf_counter() - t0:.0f} s: {summary}")


def dfloat11_dir(hf_dir, params, max_params):
    """DFloat11's own compressed checkpoint of hf_dir, made once by its compress_model."""
    out = hf_dir.replace("-hf", "-df11")
    if os.path.exists(os.path.join(out, "config.json")):
        return out
    if params > max_params:
        raise RuntimeError(f"{params / 1e9:.1f}B parameters: DFloat11's pure-Python compression is not run that large")
    from dfloat11 import compress_model

    config = transformers.AutoConfig.from_pretrained(hf_dir)
    if config.model_type != "llama":
        raise RuntimeError(f"no DFloat11 pattern for model_type {config.model_type}")
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.bfloat16)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        compress_model(model, DF11_LLAMA, out, save_single_file=False, check_correctness=True)
    print(f"dfloat11: compress_model took {time.perf_counter() - t0:.0f} s")
    return out


def load(run, path, hf_dir, a):
    if run in ("transformers", "accelerate-offload"):
        model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.bfloat16)
        if run == "accelerate-offload":
            from accelerate import cpu_offload

            return cpu_offload(model.eval(), execution_device="cuda")
        return model.to("cuda").eval()
    if run == "dfloat11":
        import transformers.modeling_utils as modeling

        if not hasattr(modeling, "no_init_weights"):  # dfloat11 0.5 imports it from where transformers 4 had it
            from transformers.initialization import no_init_weights

            modeling.no_init_weights = no_init_weights
        from dfloat11 import DFloat11Model

        params = sum(t.elements for t in codecllm.open(path).tensors)
        directory = dfloat11_dir(hf_dir, params, a.dfloat11_max_params)
        torch.cuda.reset_peak_memory_stats()  # its compression ran on the GPU too: count from its load
        with contextlib.redirect_stdout(sys.stderr):
            return DFloat11Model.from_pretrained(directory, device="cuda").eval()
    run, *options = run.split("+")  # "gpu-compressed+decode_blocks_per_sm=3": load_model keywords
    kw = {
        k: int(v) if v.isdigit() else v == "True" if v in ("True", "False") else v
        for k, _, v in (o.partition("=") for o in options)
    }
    placement, _, slots = run.partition(":")  # "gpu-compressed:3": three decode slots
    if slots:
        kw["decode_slots"] = int(slots)
    if placement.endswith("-samestream"):  # forwards on the caller's stream, not a high-priority one
        placement, kw["priority_stream"] = placement.removesuffix("-samestream"), False
    if placement.endswith("-fused"):  # batch-1 products straight from the compressed weights
        placement, kw["fused_products"] = placement.removesuffix("-fused"), True
    if placement.startswith("int8-"):
        return codecllm.load_model(path.replace(".cllm", "-int8.cllm"), device="cuda", placement=placement[5:], **kw)
    return codecllm.load_model(path, device="cuda", placement=placement, **kw)


def time_generate(model, batch, tokens, static, repeats, warm_up=True):
    """The best of `repeats` timed generates, after one of the same length (unless warm_up is False): the warm-up
    loads every kernel the growing cache needs (CUDA loads kernels lazily) and, for a static cache, compiles."""
    ids = torch.randint(3, 1000, (batch, 8), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    kw = {"do_sample": False, "min_new_tokens": tokens, "max_new_tokens": tokens, "pad_token_id": 0}
    if static:
        kw["cache_implementation"] = "static"
    best = float("inf")
    with torch.no_grad():
        for timed in [False] * warm_up + [True] * repeats:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            model.generate(ids, **kw)
            torch.cuda.synchronize()
            if timed:
                best = min(best, time.perf_counter() - t0)
    return best


def peak_vram(model):
    if hasattr(model, "codecllm_memory"):
        return model.codecllm_memory()["peak_vram"]
    return torch.cuda.max_memory_allocated()


def batches_of(run, a):
    return list(map(int, (a.static_batches if run.endswith("-static") else a.batches).split(",")))


def fresh_load(base, a, hf_dir):
    """(model, torch bytes allocated before its load) with the peak counter reset, or (None, error text)."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    try:
        return load(base, a.model, hf_dir, a), before
    except (ImportError, OSError, RuntimeError, ValueError, AttributeError) as e:  # reported, not fatal
        return None, f"{type(e).__name__}: {e}"


def one_by_one(a, hf_dir, record):
    """Each run in turn: load, time every batch (best of --repeats), free."""
    model, loaded = None, None
    for run in a.runs.split(","):
        static = run.endswith("-static")
        base = run.removesuffix("-static")
        if base != loaded:  # a "-static" run right after its base run reuses the loaded model (and its peak)
            model = loaded = None
            model, before = fresh_load(base, a, hf_dir)
            if model is None:
                print(f"{run:24s} not run: {before}")
                continue
            loaded = base
            if before > 64 << 20:
                print(f"  ({before / 2**20:.0f} MiB were still allocated before this load)")
        slow = base in SLOW
        tokens = a.slow_tokens if slow else a.tokens
        for batch in batches_of(run, a):
            seconds = time_generate(model, batch, tokens, static, 1 if slow else a.repeats)
            record(run, batch, tokens, seconds, model, peak_vram(model), before)


def interleaved(a, hf_dir, record):
    """Every run's model loaded at once, then --rounds rounds each timing one generate of every run and batch in
    turn (odd rounds in reverse order), so that rows next to each other in time compare even when the machine's speed
    drifts. A model's peak VRAM is what torch allocated over its load and warm-up beyond what the models before it
    hold, plus its native bytes."""
    models = {}
    for run in a.runs.split(","):
        base = run.removesuffix("-static")
        if base in models:
            continue
        model, before = fresh_load(base, a, hf_dir)
        if model is None:
            print(f"{run:24s} not run: {before}")
            continue
        tokens = a.slow_tokens if base in SLOW else a.tokens
        for r in (x for x in a.runs.split(",") if x.removesuffix("-static") == base):
            for batch in batches_of(r, a):
                time_generate(model, batch, tokens, r.endswith("-static"), 0)  # warm-up: kernels, compilation
        native = model.codecllm_memory()["native_device"] if hasattr(model, "codecllm_memory") else 0
        models[base] = (model, before, torch.cuda.max_memory_allocated() - before + native)
    for rnd in range(a.rounds):
        # Odd rounds in reverse order: a drift of the machine's speed within a round then favours no run over rounds.
        order = a.runs.split(",")
        for run in order if rnd % 2 == 0 else order[::-1]:
            base = run.removesuffix("-static")
            if base not in models:
                continue
            model, before, peak = models[base]
            tokens = a.slow_tokens if base in SLOW else a.tokens
            for batch in batches_of(run, a):
                seconds = time_generate(model, batch, tokens, run.endswith("-static"), 1, warm_up=False)
                record(run, batch, tokens, seconds, model, peak, before, round=rnd)


def report(rows):
    """Each row against plain transformers and accelerate's offload: their faster row of the process, and, where
    rows carry rounds, the median over rounds of the ratio to the reference's row of the same round."""
    ref, offload, by_round = {}, {}, {}
    for r in rows:  # a run listed twice (before and after the others) is compared by its faster row
        for name, table in (("transformers", ref), ("accelerate-offload", offload)):
            if r["run"] == name and r["tokens_per_s"] > table.get(r["batch"], {}).get("tokens_per_s", 0):
                table[r["batch"]] = r
        if r["run"] == "transformers" and "round" in r:
            by_round[(r["round"], r["batch"])] = r["tokens_per_s"]
    print("\nagainst plain transformers (default generate) and accelerate's offload, same process:")
    seen = set()
    for r in rows:
        if "round" in r:  # one line per run and batch: its best round, and the median of the per-round ratios
            if (r["run"], r["batch"]) in seen:
                continue
            seen.add((r["run"], r["batch"]))
            mine = [x for x in rows if x["run"] == r["run"] and x["batch"] == r["batch"]]
            r = max(mine, key=lambda x: x["tokens_per_s"])
        parts = []
        if r["batch"] in ref:
            t = ref[r["batch"]]
            parts.append(
                f"{r['tokens_per_s'] / t['tokens_per_s']:.3f}x its tok/s, {r['peak_vram'] / t['peak_vram']:.3f}x VRAM"
            )
        if "round" in r:
            ratios = sorted(
                x["tokens_per_s"] / by_round[(x["round"], x["batch"])]
                for x in mine
                if (x["round"], x["batch"]) in by_round
            )
            if ratios:
                parts.append(f"median per-round ratio {ratios[len(ratios) // 2]:.3f}x over {len(ratios)} rounds")
        if r["batch"] in offload:
            parts.append(f"{r['tokens_per_s'] / offload[r['batch']]['tokens_per_s']:.2f}x offload's tok/s")
        print(f"  {r['run']:24s} batch {r['batch']}: " + "; ".join(parts))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--synthesize", choices=sorted(SHAPES), help="make MODEL.cllm first, of this shape")
    p.add_argument(
        "--chunk-symbols", type=int, help="rANS chunk size of the file --synthesize makes (default: compress()'s)"
    )
    p.add_argument("--batches", default="1,8")
    p.add_argument("--static-batches", default="8", help="batches for the -static runs (each compiles for its own)")
    p.add_argument("--repeats", type=int, default=2, help="timed generates per row (best kept); PCIe-bound runs: 1")
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="> 1: load every run's model at once and time them in turn, round after round (rows tagged by round)",
    )
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--slow-tokens", type=int, default=8, help="tokens for the PCIe-bound runs (host, offload)")
    p.add_argument("--runs", default=RUNS)
    p.add_argument("--dfloat11-max-params", type=float, default=1e9)
    p.add_argument("--jsonl")
    a = p.parse_args()
    if a.synthesize and not os.path.exists(a.model):
        synthesize(a.synthesize, a.model, a.chunk_symbols)
    int8 = a.model.replace(".cllm", "-int8.cllm")
    hf_dir = a.model.replace(".cllm", "-hf")
    if not os.path.exists(os.path.join(hf_dir, "config.json")):
        codecllm.decompress(a.model, hf_dir)
    if "int8" in a.runs and not os.path.exists(int8):
        print(codecllm.compress(hf_dir, int8, mode="int8", progress=False))
    weight_bytes = sum(t.decoded_bytes for t in codecllm.open(a.model).tensors if len(t.shape) == 2)
    d2d = copy_gbps()
    git = ["git", "rev-parse", "--short", "HEAD"]
    commit = (
        os.environ.get("CODECLLM_COMMIT")
        or subprocess.run(git, check=False, capture_output=True, text=True).stdout.strip()
    )
    print(f"{a.model}: {weight_bytes / 2**30:.2f} GiB of matrices; device-to-device copy {d2d:.0f} GB/s")
    print(f"{'run':24s} {'batch':>5s} {'tok/s':>9s} {'ms/step':>8s} {'of copy':>8s} {'peak VRAM':>10s}")
    common = {
        "model": os.path.basename(a.model),
        "copy_gbps": d2d,
        "device": torch.cuda.get_device_name(),
        "commit": commit,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    rows = []

    def record(run, batch, tokens, seconds, model, peak, before, **extra):
        step = seconds / tokens
        row = dict(
            common,
            run=run,
            batch=batch,
            tokens=tokens,
            tokens_per_s=batch * tokens / seconds,
            ms_per_step=1e3 * step,
            of_copy=weight_bytes / step / 1e9 / d2d,
            peak_vram=peak,
            allocated_before_load=before,
            memory=model.codecllm_memory() if hasattr(model, "codecllm_memory") else None,
            **extra,
        )
        rows.append(row)
        print(
            f"{run:24s} {batch:5d} {row['tokens_per_s']:9.2f} {row['ms_per_step']:8.2f} "
            f"{100 * row['of_copy']:7.1f}% {peak / 2**30:9.2f}G" + (f"  round {extra['round']}" if extra else ""),
            flush=True,
        )
        if a.jsonl:
            with open(a.jsonl, "a") as f:
                f.write(json.dumps(row) + "\n")

    if a.rounds > 1:
        interleaved(a, hf_dir, record)
    else:
        one_by_one(a, hf_dir, record)
    report(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
