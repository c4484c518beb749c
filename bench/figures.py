#!/usr/bin/env python3
"""Redraws every figure of docs/img from the results files in bench/results, and prints each results file as
the markdown table docs/BENCHMARKS.md shows, so that no figure or table outlives the numbers it stands for.

    python3 bench/figures.py            # redraw every figure in FIGURES
    python3 bench/figures.py --tables   # also print a table per results file (paste into docs/BENCHMARKS.md)
    python3 bench/figures.py --list     # which figure comes from which results (checks they exist), no drawing

Each figure is drawn by the plotter of its kind (bench/plot_placements.py for engine_bench results,
bench/plot_batches.py for engine_bench results against the batch size,
bench/plot_python.py for python_bench results, bench/plot_rounds.py for python_bench --rounds results against the
round's transformers row, bench/plot_step_kernels.py for Nsight Compute CSVs of engine steps) from the files FIGURES names; a results file that is missing or
malformed stops the script with its name (exit 1). Without matplotlib the figures are skipped (exit 77, as the
plotters do), the tables still print.
"""

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")

# figure (under docs/img) -> (plotter, results files under bench/results, extra arguments)
FIGURES = {
    "placements-llama3-8b.png": ("plot_placements.py", ["placements-llama3-8b-h200.jsonl"], []),
    "placements-llama3-70b.png": ("plot_placements.py", ["placements-llama3-70b-h100.jsonl"], []),
    "exp4-llama3-8b.png": ("plot_placements.py", ["exp4-llama3-8b-h200-9c7b5ca.jsonl"], []),
    "engine-llama3-8b-2f87080.png": ("plot_placements.py", ["engine-llama3-8b-h200-2f87080.jsonl"], []),
    "batched-products-llama3-8b.png": (
        "plot_batches.py",
        ["batched-products-llama3-8b-h200.jsonl"],
        [
            "--call",
            "lease 5",
            "--call",
            "lease 6",
            "--call",
            "session 10",
            "--call",
            "session 12 call 9",
            "--call",
            "session 13 call 5 (d7db3ca",
            "--skip",
            "pipelined 1",
            "--skip",
            "pipelined 2",
        ]
        + ["--skip", "tensor cores, pipelined"],
    ),
    "exp4-against-gpu-llama3-8b.png": (
        "plot_batches.py",
        ["batched-products-llama3-8b-h200.jsonl"],
        ["--ratio", "--call", "session 10", "--call", "session 12 call 9", "--call", "session 13 call 5 (d7db3ca"],
    ),
    "python-llama3-8b.png": ("plot_python.py", ["python-bench-h200.jsonl"], ["--model", "llama3-8b.cllm"]),
    "python-llama3-8b-575deeb.png": (
        "plot_python.py",
        ["python-bench-h200-575deeb.jsonl"],
        ["--model", "llama3-8b.cllm"],
    ),
    "python-llama3-8b-d80b8da.png": (
        "plot_python.py",
        ["python-bench-h200-d80b8da.jsonl"],
        ["--model", "llama3-8b.cllm"],
    ),
    "python-llama3-8b-6892a12.png": (
        "plot_python.py",
        ["python-bench-h200-6892a12.jsonl"],
        ["--model", "llama3-8b.cllm"],
    ),
    "python-llama3-8b-40183ae.png": (
        "plot_python.py",
        ["python-bench-h200-40183ae-run3.jsonl"],
        ["--model", "llama3-8b.cllm"],
    ),
    "python-rounds-llama3-8b.png": (
        "plot_rounds.py",
        ["python-bench-h200-40183ae-run1.jsonl", "python-bench-h200-40183ae-run2.jsonl"]
        + ["python-bench-h200-40183ae-run3.jsonl", "python-bench-h200-bc1f455.jsonl"]
        + ["python-bench-h200-f270332-run1.jsonl", "python-bench-h200-f270332-run2.jsonl"]
        + ["python-bench-h200-80d91af.jsonl", "python-bench-h200-7ab3a12.jsonl"],
        [
            "--group",
            "bookkeeping in Python (40183ae)=gpu-compressed@40183ae",
            "--group",
            "bookkeeping in Python (bc1f455)=gpu-compressed@bc1f455",
            "--group",
            (
                "native pipeline, refill after the last block=gpu-compressed@f270332,gpu-compressed@80d91af,"
                "gpu-compressed+refill_after_forward=False@7ab3a12"
            ),
            "--group",
            (
                "native pipeline, refill after the forward (default)=gpu-compressed+refill_after_forward=True@f270332,"
                "gpu-compressed+refill_after_forward=True@80d91af,gpu-compressed@7ab3a12"
            ),
        ],
    ),
    "step-kernels-llama3-8b.png": (
        "plot_step_kernels.py",
        [
            "step-kernels-8b4-h200-6533b83.csv.gz",
            "step-kernels-8b4-h200-d5482a2.csv.gz",
            "step-kernels-8b4-h200-fused-attention.csv.gz",
        ],
        ["--labels", "6533b83,d5482a2,RoPE in attention (not kept)"],
    ),
}


def read(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON: {e}")
    return rows


def gib(n):
    return f"{n / 2**30:.2f} GiB"


def table(path):
    """The file's rows as a markdown table: engine_bench rows (placement) or python_bench rows (run)."""
    rows = read(path)
    if not rows:
        return f"{os.path.basename(path)}: no rows\n"
    if "placement" in rows[0]:
        head = ["model", "placement", "mode", "batch", "tok/s", "ms/step", "peak VRAM"]
        cells = [
            [r["model"], r["placement"], r["mode"], r["batch"], f"{r['tokens_per_s']:.1f}"]
            + [f"{r['ms_per_step']:.2f}", gib(r["peak_vram_bytes"])]
            for r in rows
        ]
        if any(r.get("gpus", 1) > 1 for r in rows):  # a split: over how many GPUs (or shares on GPU 0, in turn)
            head.insert(4, "GPUs")
            for row, r in zip(cells, rows):
                n = r.get("gpus", 1)
                row.insert(4, f"{n} shares on GPU 0" if r.get("shares_on_one_gpu") else n)
    else:
        head = ["run", "batch", "tok/s", "ms/step", "peak VRAM", "round"]
        cells = [
            [r["run"], r["batch"], f"{r['tokens_per_s']:.2f}", f"{r['ms_per_step']:.2f}"]
            + [gib(r["peak_vram"]), r.get("round", "")]
            for r in rows
        ]
    device = rows[0].get("device", "")
    commits = sorted({str(r.get("commit")) for r in rows if r.get("commit")})
    lines = [f"{os.path.basename(path)} ({device}; commit {', '.join(commits) or 'not recorded'})", ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("| " + " | ".join("---" for _ in head) + " |")
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", action="store_true", help="print every results file as a markdown table")
    p.add_argument("--list", action="store_true", help="print which results each figure is drawn from")
    a = p.parse_args()
    for name, (plotter, inputs, _) in FIGURES.items():
        for f in inputs:
            if not os.path.exists(os.path.join(RESULTS, f)):
                sys.exit(f"figures: {name} needs bench/results/{f}, which is missing")
        if a.list:
            print(f"docs/img/{name} <- {plotter} {' '.join('bench/results/' + f for f in inputs)}")
    if a.tables:
        for f in sorted(os.listdir(RESULTS)):
            if f.endswith(".jsonl"):
                print(table(os.path.join(RESULTS, f)))
    if a.list:
        return 0
    status = 0
    for name, (plotter, inputs, extra) in FIGURES.items():
        cmd = [sys.executable, os.path.join(ROOT, "bench", plotter)] + [os.path.join(RESULTS, f) for f in inputs]
        cmd += extra + ["-o", os.path.join(ROOT, "docs", "img", name)]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True)
        if done.returncode == 77:
            print(f"figures: matplotlib missing, {name} not drawn")
            status = 77
        elif done.returncode != 0:
            sys.exit(f"figures: {name}: {done.stderr.strip() or done.stdout.strip()}")
        else:
            print(f"drew docs/img/{name}")
    return status


if __name__ == "__main__":
    sys.exit(main())
