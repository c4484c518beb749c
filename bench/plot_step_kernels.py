#!/usr/bin/env python3
"""Plots where one engine step spends its time: a bar per Nsight Compute CSV (bench/step_kernels.py reads
them), split by kernel, in microseconds of kernels run one by one.

Exits 1 naming the file on missing or malformed input (as step_kernels does), 77 (CTest's skip) when
matplotlib is not installed.

    python3 bench/plot_step_kernels.py a.csv.gz b.csv.gz [--labels "before,after"] -o step.png
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot_common import SKIPPED, pyplot, save
from step_kernels import step_profile

COLORS = {
    "gemv_kernel": "tab:blue",
    "argmax_kernel": "tab:red",
    "attention_kernel": "tab:orange",
    "rmsnorm_kernel": "tab:green",
    "qkv_rope_store_kernel": "tab:purple",
    "silu_mul_kernel": "tab:brown",
    "embed_kernel": "tab:gray",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--labels", help="comma-separated, one a file (default: the file names)")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    labels = a.labels.split(",") if a.labels else [os.path.basename(f).split(".")[0] for f in a.csv]
    if len(labels) != len(a.csv):
        sys.exit(f"plot_step_kernels: {len(labels)} labels for {len(a.csv)} files")
    steps = []
    for f in a.csv:
        _, _, per, n = step_profile(f)
        steps.append({k: v[1] / n / 1e3 for k, v in per.items()})  # us a step
    plt = pyplot("plot_step_kernels")
    if plt is None:
        return SKIPPED
    kernels = sorted({k for s in steps for k in s}, key=lambda k: -max(s.get(k, 0) for s in steps))
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.7 * len(steps)))
    for y, s in enumerate(steps):
        left = 0.0
        for k in kernels:
            us = s.get(k, 0.0)
            ax.barh(y, us, left=left, color=COLORS.get(k), label=k if y == 0 else None)
            left += us
        ax.text(left + 5, y, f"{left:.0f} us", va="center")
    ax.set_yticks(range(len(steps)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("microseconds of kernels a step, run one by one (Nsight Compute)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS.get(k)) for k in kernels]
    ax.legend(handles, kernels, fontsize=7, ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    save(fig, a.output, dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
