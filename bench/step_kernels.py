"""Sums an Nsight Compute CSV of the engine's steps per kernel: what one step spends where.

Input: `ncu --csv --print-units base --metrics gpu__time_duration.sum,dram__bytes_read.sum,...`
over engine_bench (scripts/device/step_suite.sh). A step ends with the kernel that picks the
next token (argmax); kernels before the first step's end that are not part of a step (the load's
decodes) and the warm-up steps are left out. Prints, for the average measured step, each
kernel's launches, time and DRAM read rate, largest first.

    python3 bench/step_kernels.py ncu-step.csv[.gz] [--warmup 3]
"""

import argparse
import collections
import csv
import gzip
import re
import sys


def kernels(path):
    """[(name, {metric: value})] in launch order."""
    rows = collections.OrderedDict()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # ncu's own messages are not CSV
    for r in csv.DictReader(lines):
        k = rows.setdefault(r["ID"], (r["Kernel Name"], {}))
        try:
            k[1][r["Metric Name"]] = float(r["Metric Value"].replace(",", ""))
        except ValueError:
            pass
    return list(rows.values())


def short(name):
    """The kernel's own name, without namespaces, template arguments and parameters."""
    name = re.sub(r"\(.*$", "", name.replace("(anonymous namespace)", "anon"))
    name = re.sub(r"<.*>", "", name.replace("<unnamed>", "anon"))
    return name.split("::")[-1].strip()


def step_profile(path, warmup=3):
    """(kernels profiled, steps, {kernel: [launches, ns, DRAM bytes read]} summed over the measured steps, steps
    measured). Exits naming the file when it holds no step after the warm-up."""
    ks = kernels(path)
    steps, cur = [], []
    for name, m in ks:
        cur.append((short(name), m))
        if "argmax" in name:
            steps.append(cur)
            cur = []
    if len(steps) <= warmup:
        sys.exit(f"{path}: {len(steps)} steps, none after the {warmup} warm-up steps")
    measured = steps[warmup:]
    per = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for step in measured:
        for name, m in step:
            p = per[name]
            p[0] += 1
            p[1] += m.get("gpu__time_duration.sum", 0.0)
            p[2] += m.get("dram__bytes_read.sum", 0.0)
    return len(ks), len(steps), per, len(measured)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv")
    ap.add_argument("--warmup", type=int, default=3, help="steps left out at the start")
    a = ap.parse_args()
    profiled, steps, per, n = step_profile(a.csv, a.warmup)
    total_ns = sum(p[1] for p in per.values()) / n
    print(f"{profiled} kernels profiled, {steps} steps, {n} measured; one step's kernels, run one by one:")
    print(f"{'kernel':34} {'launches':>8} {'us':>9} {'share':>6} {'MB read':>9} {'GB/s':>7}")
    for name, (c, ns, rd) in sorted(per.items(), key=lambda kv: -kv[1][1]):
        ns, rd = ns / n, rd / n
        print(
            f"{name[:34]:34} {c / n:8.1f} {ns / 1e3:9.1f} {100 * ns / total_ns:5.1f}% {rd / 1e6:9.2f} "
            f"{rd / ns if ns else 0:7.0f}"
        )
    read = sum(p[2] for p in per.values()) / n
    print(
        f"{'all':34} {sum(p[0] for p in per.values()) / n:8.1f} {total_ns / 1e3:9.1f} {100:5.0f}% "
        f"{read / 1e6:9.2f} {read / total_ns:7.0f}"
    )


if __name__ == "__main__":
    main()
