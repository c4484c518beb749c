#!/usr/bin/env python3
"""Plots bench/python_bench.py results: tokens/s and peak VRAM of each run, batch 1 and 8.

Reads the JSON lines python_bench.py writes (run, model, batch, tokens_per_s, peak_vram, device)
and draws one figure per model: tokens/s (log scale) per run and batch, and peak VRAM per run.
A run measured twice (python_bench lists the reference before and after the others) keeps its
faster row, as the bench's own ratios do.

    python3 bench/plot_python.py bench/results/python-bench-h200.jsonl --model llama3-8b.cllm -o out.png

Exits 1 naming the file and line on malformed input, 77 (CTest's skip) without matplotlib.
"""

import argparse
import sys

from plot_common import SKIPPED, pyplot, rows_of, save

FIELDS = {"run": str, "model": str, "batch": int, "tokens_per_s": (int, float), "peak_vram": (int, float)}


def load(paths, model):
    rows = {}
    for path in paths:
        for r in rows_of(path, FIELDS):
            if r["model"] != model:
                continue
            key = (r["run"], r["batch"])
            if key not in rows or r["tokens_per_s"] > rows[key]["tokens_per_s"]:
                rows[key] = r
    if not rows:
        sys.exit(f"no rows for model {model} in {', '.join(paths)}")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+")
    p.add_argument("--model", required=True, help="the model field to plot (a .cllm file name)")
    p.add_argument("-o", "--output", required=True)
    a = p.parse_args()
    rows = load(a.results, a.model)
    plt = pyplot("plot_python")
    if plt is None:
        return SKIPPED
    runs = list(dict.fromkeys(run for run, _ in rows))
    batches = sorted({b for _, b in rows})
    fig, (speed, vram) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(batches)
    for i, b in enumerate(batches):
        xs = [k + i * width for k, run in enumerate(runs) if (run, b) in rows]
        ys = [rows[(run, b)]["tokens_per_s"] for run in runs if (run, b) in rows]
        speed.bar(xs, ys, width, label=f"batch {b}")
    speed.set_yscale("log")
    speed.set_ylabel("tokens/s (all sequences), log scale")
    speed.set_xticks([k + width * (len(batches) - 1) / 2 for k in range(len(runs))], runs, rotation=35, ha="right")
    speed.legend()
    vram.bar(range(len(runs)), [max(r["peak_vram"] for (run, _), r in rows.items() if run == x) / 2**30 for x in runs])
    vram.set_ylabel("peak VRAM (GiB)")
    vram.set_xticks(range(len(runs)), runs, rotation=35, ha="right")
    device = next(iter(rows.values())).get("device", "")
    fig.suptitle(f"{a.model} through transformers' generate(), {device}")
    save(fig, a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
