#!/usr/bin/env python3
"""Perplexity of a model through the Python package, lossless against int8, on held-out text.

    python3 bench/python_perplexity.py ../shared/models/pycode24M [--tokens 16384] [--window 512] [--device cpu]

Compresses the Hugging Face directory both ways (into a temporary folder), loads each .cllm with
codecllm.load_model and runs non-overlapping windows over the first --tokens tokens of val.txt
(tokenized by the tokenizer the file carries), in float32 on the CPU (bfloat16 on CUDA). Prints
the mean negative log-likelihood and perplexity of each, and the int8 perplexity's delta.
"""

import argparse
import json
import math
import os
import sys
import tempfile
import time

import codecllm
import torch


def perplexity(model, ids, window, device):
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, window):
            chunk = torch.tensor([ids[start : start + window + 1]], device=device)
            if chunk.shape[1] < 2:
                break
            logits = model(chunk[:, :-1]).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[0], chunk[0, 1:], reduction="sum")
            nll += loss.item()
            count += chunk.shape[1] - 1
    return nll / count, count


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="Hugging Face directory with val.txt beside its weights")
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--window", type=int, default=512)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    a = p.parse_args()
    with open(os.path.join(a.model, "val.txt"), encoding="utf-8") as f:
        text = f.read()
    dtype = torch.float32 if a.device == "cpu" else torch.bfloat16
    results = {}
    with tempfile.TemporaryDirectory() as d:
        for mode in ("lossless", "int8"):
            path = os.path.join(d, f"{mode}.cllm")
            summary = codecllm.compress(a.model, path, mode=mode, progress=False)
            tokenizer = codecllm.load_tokenizer(path)
            ids = tokenizer(text, add_special_tokens=False).input_ids[: a.tokens]
            model = codecllm.load_model(path, device=a.device, placement="gpu", dtype=dtype)
            t0 = time.perf_counter()
            nll, count = perplexity(model, ids, a.window, a.device)
            results[mode] = {
                "mean_nll": nll,
                "perplexity": math.exp(nll),
                "tokens": count,
                "bits_per_weight": summary.bits_per_weight,
                "seconds": time.perf_counter() - t0,
            }
    delta = results["int8"]["perplexity"] / results["lossless"]["perplexity"] - 1
    results["int8_delta"] = delta
    if a.json:
        print(json.dumps(results))
        return 0
    for mode in ("lossless", "int8"):
        r = results[mode]
        print(
            f"{mode:9s} {r['bits_per_weight']:6.3f} bits/weight  perplexity {r['perplexity']:.4f} "
            f"(mean NLL {r['mean_nll']:.5f} over {r['tokens']} tokens, {r['seconds']:.1f} s)"
        )
    print(f"int8 perplexity {100 * delta:+.3f}% against lossless")
    return 0


if __name__ == "__main__":
    sys.exit(main())
