#!/usr/bin/env python3
"""Plots python_bench.py --rounds results: every round's tokens/s ratio to plain transformers' row of the same
round and batch, pooled into groups of runs, with each group's median.

On the GPU machine a generate() is bound by a host CPU whose speed drifts within seconds, so single rounds scatter
far more than the effects measured; the plot shows that scatter, where a table of medians would hide it.

    python3 bench/plot_rounds.py FILE.jsonl ... --group "LABEL=RUN@COMMIT[,RUN@COMMIT...]" ... [--goal 0.95] -o out.png

A group pools the rows of the named runs whose commit field is the named one. Exits 1 naming the file and line on
malformed input or a group that matches no row, 77 (CTest's skip) without matplotlib.
"""

import argparse
import statistics
import sys

from plot_common import SKIPPED, pyplot, rows_of, save

FIELDS = {"run": str, "commit": str, "batch": int, "round": int, "tokens_per_s": (int, float)}
BATCHES = (1, 8)


def load(paths):
    """{(commit, round, batch): transformers tok/s} and [(commit, run, round, batch, tok/s)] of the other runs."""
    reference, rows = {}, []
    for path in paths:
        for r in rows_of(path, FIELDS):  # a row without "round": not a --rounds run
            key = (path, r["round"], r["batch"])
            if r["run"] == "transformers":
                reference[key] = r["tokens_per_s"]
            else:
                rows.append((r["commit"], r["run"], key, r["tokens_per_s"]))
    return reference, rows


def ratios(group, reference, rows):
    """{batch: [per-round ratio]} of a group's runs."""
    members = {tuple(m.strip().rsplit("@", 1)) for m in group.split(",")}
    out = {b: [] for b in BATCHES}
    for commit, run, key, tps in rows:
        if (run, commit) in members and key in reference and key[2] in out:
            out[key[2]].append(tps / reference[key])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+")
    p.add_argument("--group", action="append", required=True, help="LABEL=RUN@COMMIT[,RUN@COMMIT...]")
    p.add_argument("--goal", type=float, default=0.95, help="the ratio drawn as the goal line")
    p.add_argument("-o", "--output", required=True)
    a = p.parse_args()
    reference, rows = load(a.results)
    groups = []
    for g in a.group:
        label, _, members = g.partition("=")
        if not members:
            sys.exit(f"--group {g!r}: LABEL=RUN@COMMIT[,...] expected")
        r = ratios(members, reference, rows)
        if not any(r.values()):
            sys.exit(f"--group {label!r}: no round of {members} in {', '.join(a.results)}")
        groups.append((label, r))
    plt = pyplot("plot_rounds")
    if plt is None:
        return SKIPPED

    fig, axes = plt.subplots(1, len(BATCHES), figsize=(5.5 * len(BATCHES), 4.8), sharey=True)
    for ax, batch in zip(axes, BATCHES):
        for i, (label, r) in enumerate(groups):
            values = r[batch]
            if not values:
                continue
            xs = [i + 0.25 * ((k * 0.618) % 1 - 0.5) for k in range(len(values))]  # spread, reproducibly
            ax.scatter(xs, values, s=12, alpha=0.55, color=f"C{i}")
            median = statistics.median(values)
            ax.hlines(median, i - 0.3, i + 0.3, color="black", linewidth=2)
            ax.annotate(f"{median:.3f}\n{len(values)} rounds", (i + 0.32, median), fontsize=8, va="center")
        ax.axhline(a.goal, color="red", linestyle="--", linewidth=1, label=f"goal {a.goal:g}x")
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([label for label, _ in groups], rotation=15, ha="right", fontsize=8)
        ax.set_title(f"batch {batch}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("tok/s against transformers, same round (bar: median)")
    axes[0].legend(loc="lower left", fontsize=8)
    fig.suptitle("codecllm gpu-compressed on the 8B shape: every round's ratio to plain transformers", fontsize=10)
    save(fig, a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
