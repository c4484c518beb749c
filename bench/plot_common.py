"""What the plotters share: matplotlib drawing into files, or None without matplotlib (the plotters then exit
77, CTest's skip), and saving a figure."""

import json
import sys

SKIPPED = 77  # the plotters' exit status without matplotlib


def rows_of(path, fields):
    """The JSON lines of a results file, each with the fields named (name -> type or tuple of types); stops the
    script naming the file and line of the first that is not JSON or lacks one."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{n}: not JSON: {e}")
            bad = [k for k, t in fields.items() if not isinstance(r.get(k), t)]
            if bad:
                sys.exit(f"{path}:{n}: missing or mistyped {', '.join(bad)}")
            yield r


def pyplot(name):
    """matplotlib.pyplot on the file-only backend, or None (said on stderr, naming the plotter) without it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"{name}: matplotlib not installed, no plot drawn", file=sys.stderr)
        return None
    return plt


def save(fig, path, dpi=110, note=""):
    """Lays the figure out tight and writes it (PNG by the name's ending)."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    print(f"wrote {path}{note}")
