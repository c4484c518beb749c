#!/usr/bin/env python3
"""Plots engine benchmark results against the batch size: tokens/s (all sequences together) at each batch, one
line per (model label, placement, call) of the rows chosen.

Reads the JSON-lines files bench/engine_bench writes (bench/plot_placements.py documents the fields); a row's
optional "call" names the device run it came from (rows of several runs share one file). --call keeps the rows
whose call holds any of the given strings, --skip drops the rows whose model label holds any of them. --ratio
plots instead each other placement's tokens/s over the `gpu` row of the same call, commit and batch (the same
process: the ratio the engine prints), one line per (model label, placement, call).

Exits 1 naming the file and line on missing or malformed input, 77 (CTest's skip) when matplotlib is not
installed.

    python3 bench/plot_batches.py results.jsonl [--call TEXT ...] [--skip TEXT ...] [--ratio] -o batches.png
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
    ap.add_argument("--ratio", action="store_true", help="plot tokens/s over the same call's gpu row")
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
    lines = {}
    if args.ratio:
        reference = {}
        for r in rows:
            if r["placement"] == "gpu":
                key = (r.get("call", ""), r.get("commit", ""), r["batch"])
                if key in reference:
                    sys.exit(
                        f"two gpu rows for call {key[0]!r}, commit {key[1]!r}, batch {key[2]}: name one with --call"
                    )
                reference[key] = r["tokens_per_s"]
        rows = [r for r in rows if r["placement"] != "gpu"]
    for r in rows:
        key = (r["model"], r["placement"], r.get("call", ""))
        value = r["tokens_per_s"]
        if args.ratio:
            gpu = reference.get((r.get("call", ""), r.get("commit", ""), r["batch"]))
            if gpu is None:
                sys.exit(f"no gpu row for {r['model']!r} at batch {r['batch']} in call {r.get('call', '')!r}")
            value /= gpu
        lines.setdefault(key, []).append((r["batch"], value))
    plt = pyplot("plot_batches")
    if plt is None:
        sys.exit(SKIPPED)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for (model, placement, call), points in sorted(lines.items()):
        points.sort()
        short = re.search(r"lease \d+", call)  # a call's lease names it shortly where it has one
        tag = short.group(0) if short else call
        label = f"{model}, {placement}" + (f" ({tag})" if len(args.call) > 1 else "")
        style = "-" if placement == "gpu" else "--"
        ax.plot([b for b, _ in points], [t for _, t in points], style, marker="o", label=label)
    ax.set_xscale("log", base=2)
    if args.ratio:
        ax.axhline(1.0, color="black", linewidth=0.8, linestyle=":")
    else:
        ax.set_yscale("log")
    batches = sorted({r["batch"] for r in rows})
    ax.set_xticks(batches)
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("batch (sequences decoded together)")
    if args.ratio:
        ax.set_ylabel("tokens/s over gpu's, same process")
        ax.set_title(f"{rows[0]['device']}: against gpu (16-bit weights) in the same run")
    else:
        ax.set_ylabel("tokens/s, all sequences")
        ax.set_title(f"{rows[0]['device']}: products of several sequences")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right" if args.ratio else "upper left")
    save(fig, args.output, note=f" ({len(rows)} runs)")


if __name__ == "__main__":
    main()
