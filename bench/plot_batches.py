#!/usr/bin/env python3
"""Plots engine benchmark results against the batch size: tokens/s (all sequences together) at each batch, one
line per (model label, placement, call) of the rows chosen.

Reads the JSON-lines files bench/engine_bench writes (bench/plot_placements.py documents the fields); a row's
optional "call" names the device run it came from (rows of several runs share one file). --call keeps the rows
whose call holds any of the given strings, --skip drops the rows whose model label holds any of them.

Exits 1 naming the file and line on missing or malformed input, 77 (CTest's skip) when matplotlib is not
installed.

    python3 bench/plot_batches.py results.jsonl [--call TEXT ...] [--skip TEXT ...] -o batches.png
"""

import argparse
import re
import sys

from figures import read as read_jsonl  # the bench scripts' one JSON-lines reader
from plot_common import SKIPPED, pyplot, save

FIELDS = {"model": str, "placement": str, "batch": int, "tokens_per_s": (int, float), "device": str}


def read(path):
    rows = read_jsonl(path)  # exits naming the file and line on a line that is not JSON
    for n, row in enumerate(rows, 1):
        for key, kind in FIELDS.items():
            if not isinstance(row.get(key), kind):
                sys.exit(f"{path}: row {n}: field '{key}' missing or not {getattr(kind, '__name__', 'a number')}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+")
    ap.add_argument("--call", action="append", default=[], help="keep rows whose call holds this (any of them)")
    ap.add_argument("--skip", action="append", default=[], help="drop rows whose model label holds this")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()
    rows = [r for path in args.results for r in read(path)]
    rows = [
        r
        for r in rows
        if (not args.call or any(c in r.get("call", "") for c in args.call))
        and not any(s in r["model"] for s in args.skip)
    ]
    if not rows:
        sys.exit("no rows left to plot: check --call and --skip")
    plt = pyplot("plot_batches")
    if plt is None:
        sys.exit(SKIPPED)

    lines = {}
    for r in rows:
        key = (r["model"], r["placement"], r.get("call", ""))
        lines.setdefault(key, []).append((r["batch"], r["tokens_per_s"]))
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for (model, placement, call), points in sorted(lines.items()):
        points.sort()
        short = re.search(r"lease \d+", call)  # a call's lease names it shortly where it has one
        tag = short.group(0) if short else call
        label = f"{model}, {placement}" + (f" ({tag})" if len(args.call) > 1 else "")
        style = "-" if placement == "gpu" else "--"
        ax.plot([b for b, _ in points], [t for _, t in points], style, marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    batches = sorted({r["batch"] for r in rows})
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("batch (sequences decoded together)")
    ax.set_ylabel("tokens/s, all sequences")
    ax.set_title(f"{rows[0]['device']}: products of several sequences")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    save(fig, args.output, note=f" ({len(rows)} runs)")


if __name__ == "__main__":
    main()
