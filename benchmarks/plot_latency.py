"""Plot ping latency against load from ``serverlord bench ingest --json`` reports.

Usage: python benchmarks/plot_latency.py OUT.png LABEL=REPORT.json [...]
Each report gives one line per percentile (p50, p99): a point per connection
count, at the durable pings/s it reached. matplotlib is needed here only; it is
not a dependency of serverlord. Install it in another venv than the one that
builds the executable: PyInstaller bundles what optional imports find there
(with matplotlib and numpy installed the executable grew from 27 to 48 MB).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> int:
    if len(sys.argv) < 3 or any("=" not in arg for arg in sys.argv[2:]):
        print(__doc__, file=sys.stderr)
        return 2
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for arg in sys.argv[2:]:
        label, path = arg.split("=", 1)
        report = json.loads(Path(path).read_text())
        levels = report["levels"]
        rate = [level["serverlord"]["ok_per_s"] for level in levels]
        for pct, style in (("p50", "o-"), ("p99", "s--")):
            latency = [level["serverlord"][f"{pct}_ms"] for level in levels]
            (line,) = axes.plot(rate, latency, style, label=f"{label} {pct}")
            if pct == "p99":
                for x, y, level in zip(rate, latency, levels, strict=True):
                    axes.annotate(
                        str(level["connections"]),
                        (x, y),
                        textcoords="offset points",
                        xytext=(4, 4),
                        fontsize=7,
                        color=line.get_color(),
                    )
    axes.set_xlabel("durable pings/s")
    axes.set_ylabel("latency (ms)")
    axes.set_yscale("log")
    axes.set_title("serverlord ping latency against load (numbers: connections)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
