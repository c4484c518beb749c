#!/usr/bin/env python3
"""Where a kernel's instructions go: reads the per-instruction SASS table Nsight Compute exports
(`ncu -i REPORT --page source --print-source sass --csv`, gzipped or not) and prints its runs of
straight-line code (consecutive instructions executed equally often), largest share first: each
run's address range, how many times it ran, its instructions, its share of all instructions
executed and of the warp-stall samples, and its first instructions.

Exits 1 naming the file on input that is not such a table.

    python3 bench/sass_blocks.py bench/results/ncu-products-h200/sass-exp4_gemv_kernel-1-08f12dd.csv.gz [--top 20]
"""

import argparse
import csv
import gzip
import sys


def read(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", newline="") as f:
            rows = list(csv.reader(f))
        header = rows[1]
        cols = [header.index(name) for name in ("Address", "Source", "Instructions Executed")]
        stall = header.index("Warp Stall Sampling (All Samples)")
        return [(int(r[cols[0]], 16), r[cols[1]].strip(), int(r[cols[2]]), int(r[stall])) for r in rows[2:] if r]
    except (OSError, IndexError, ValueError, EOFError) as e:
        sys.exit(f"{path}: not an Nsight Compute SASS table ({e})")


def runs(instructions):
    base = instructions[0][0]
    out = []  # [first, last, executions, count, stall samples, sources]
    for address, source, executed, stall in instructions:
        if out and out[-1][2] == executed:
            out[-1][1] = address - base
            out[-1][3] += 1
            out[-1][4] += stall
            out[-1][5].append(source)
        else:
            out.append([address - base, address - base, executed, 1, stall, [source]])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()
    instructions = read(args.table)
    if not instructions:
        sys.exit(f"{args.table}: no instructions")
    total = sum(i[2] for i in instructions)
    stalls = max(1, sum(i[3] for i in instructions))
    print(f"{args.table}: {total} warp instructions executed, {stalls} stall samples")
    for first, last, executed, count, stall, sources in sorted(runs(instructions), key=lambda r: -r[2] * r[3])[
        : args.top
    ]:
        share = 100 * executed * count / total
        print(
            f"{first:#06x}-{last:#06x} {executed:>8} x {count:>3} = {executed * count:>9} ({share:5.1f}%)"
            f" stalls {100 * stall / stalls:5.1f}%  {' | '.join(sources[:3])[:80]}"
        )


if __name__ == "__main__":
    main()
