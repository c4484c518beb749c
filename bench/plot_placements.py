#!/usr/bin/env python3
"""Plots engine benchmark results: decode tokens/s against peak VRAM, one point per run.

Reads JSON-lines files written by the engine benchmark, one object per line:

    {"model": "llama3-8b-shape", "placement": "host", "mode": "lossless", "batch": 1,
     "tokens_per_s": 5.2, "peak_vram_bytes": 123456789, "device": "NVIDIA H100 80GB HBM3"}

Marker shape = placement, color = mode ("raw" for uncompressed baselines), label = batch size
(and the model, when the files hold more than one: files of different codings side by side).
The y axis is logarithmic: host placements run orders of magnitude slower than gpu.

Exits 1 naming the file and line on missing or malformed input, 77 (CTest's skip) when
matplotlib is not installed.

    python3 bench/plot_placements.py results.jsonl [more.jsonl ...] -o placements.png
"""

import argparse
import json
import math
import os
import sys

MARKERS = {"gpu": "o", "gpu-compressed": "s", "host": "^", "host-raw": "v", "auto": "*"}
COLORS = {"lossless": "tab:blue", "int8": "tab:orange", "raw": "tab:gray"}
FIELDS = {
    "model": str,
    "placement": str,
    "mode": str,
    "batch": int,
    "tokens_per_s": (int, float),
    "peak_vram_bytes": (int, float),
    "device": str,
}


class InputError(Exception):
    pass


def check_record(record):
    """Raises InputError saying what is wrong with one decoded line."""
    if not isinstance(record, dict):
        raise InputError("expected a JSON object")
    for name, kind in FIELDS.items():
        if name not in record:
            raise InputError(f'missing field "{name}"')
        # bool is an int in Python, never a valid count or rate here
        if not isinstance(record[name], kind) or isinstance(record[name], bool):
            raise InputError(f'field "{name}" is {record[name]!r}, expected {kind_name(kind)}')
    for name, known in (("placement", MARKERS), ("mode", COLORS)):
        if record[name] not in known:
            raise InputError(f'unknown {name} "{record[name]}" (known: {", ".join(known)})')
    if record["batch"] < 1:
        raise InputError(f"batch {record['batch']} is not positive")
    if not record["tokens_per_s"] > 0:  # log axis
        raise InputError(f"tokens_per_s {record['tokens_per_s']} is not positive")
    if record["peak_vram_bytes"] < 0:
        raise InputError(f"peak_vram_bytes {record['peak_vram_bytes']} is negative")


def kind_name(kind):
    return "a string" if kind is str else "an integer" if kind is int else "a number"


def read_records(paths):
    records = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.readlines()
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from e
        found = 0
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\r\n"))
                check_record(record)
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{number}: invalid JSON: {e.msg} at column {e.colno}") from e
            except InputError as e:
                raise InputError(f"{path}:{number}: {e}") from e
            records.append(record)
            found += 1
        if not found:
            raise InputError(f"{path}: no results")
    return records


def distinct(records, name):
    return ", ".join(dict.fromkeys(r[name] for r in records))  # first-seen order


def plot(records, output):
    try:
        import matplotlib
    except ImportError as e:
        print(f"skipped: {e}", file=sys.stderr)
        sys.exit(77)
    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(8, 5.5))
    several = len({r["model"] for r in records}) > 1
    # Points that fall on one spot (the same weights decoded from files of two codings) share a label.
    spots = {}
    for r in records:
        x, y = r["peak_vram_bytes"] / 2**30, r["tokens_per_s"]
        ax.scatter(x, y, marker=MARKERS[r["placement"]], color=COLORS[r["mode"]], s=60, zorder=3)
        spot = spots.setdefault((round(x, 1), round(math.log10(y), 2), r["batch"]), {"at": (x, y), "models": []})
        spot["models"].append(r["model"])
    # Labels name models without the words all of them start with (the shape; the title has it).
    words = [m.split(" ") for m in dict.fromkeys(r["model"] for r in records)]
    common = min(len(os.path.commonprefix(words)), min(map(len, words)) - 1) if several else 0
    for (_, _, batch), spot in spots.items():
        names = dict.fromkeys(" ".join(m.split(" ")[common:]) for m in spot["models"])
        label = f"{' / '.join(names)} b{batch}" if several else f"b{batch}"
        ax.annotate(label, spot["at"], textcoords="offset points", xytext=(6, 4), fontsize=8)
    if several:
        ax.margins(x=0.2, y=0.1)  # room for the longer labels
    ax.set_yscale("log")
    ax.set_xlabel("peak VRAM (GiB)")
    ax.set_ylabel("decode tokens/s (log)")
    ax.set_title(f"{distinct(records, 'model')} on {distinct(records, 'device')}")
    ax.grid(True, which="both", alpha=0.3)
    used = {name: {r[name] for r in records} for name in ("placement", "mode")}
    shapes = [
        Line2D([], [], linestyle="", marker=m, color="black", label=p)
        for p, m in MARKERS.items()
        if p in used["placement"]
    ]
    colors = [
        Line2D([], [], linestyle="", marker="o", color=c, label=m) for m, c in COLORS.items() if m in used["mode"]
    ]
    # outside the axes, where no point can hide under them
    first = ax.legend(handles=shapes, title="placement", loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.add_artist(first)
    second = ax.legend(handles=colors, title="mode", loc="lower left", bbox_to_anchor=(1.01, 0))
    try:
        # an artist added by hand is left out of the tight box unless named
        fig.savefig(output, format="png", dpi=120, bbox_inches="tight", bbox_extra_artists=[first, second])
    except OSError as e:
        raise InputError(f"{output}: cannot write: {e.strerror or e}") from e


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", metavar="RESULTS.jsonl", help="engine benchmark JSON-lines output")
    parser.add_argument("-o", "--output", required=True, metavar="PNG", help="image to write")
    args = parser.parse_args()
    try:
        plot(read_records(args.inputs), args.output)
    except InputError as e:
        print(f"plot_placements: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
