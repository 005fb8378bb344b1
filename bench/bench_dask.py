"""Benchmark: ``icv fleet mileage --scheduler local:N`` against one process, whole command.

Run from the repository root::

    python bench/bench_dask.py --points 5000000 --workers 2 --runs 2

Both commands are complete ``icv fleet mileage`` processes (Python start-up, imports,
network load, index, noise estimate, matching, tables), started in turn A B A B ... so
that load from elsewhere hits both alike; the ratio is taken pair by pair. Inputs are
SYNTHETIC: the street grid of ``bench_fleet.py`` inside the Jiading outline and its
simulated fleet tiled to ``--points`` rows (cached in ``--work``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_fleet import prepare, tiled_log  # noqa: E402


def run(cmd: list[str]) -> tuple[float, float, str, float, float]:
    """Wall s, CPU s (the process and its children), stdout, and the peak RSS (MiB) of the
    main process and of its largest child (a Dask worker), sampled every 0.2 s."""
    import psutil

    t = time.perf_counter()
    r0 = os.times()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = psutil.Process(p.pid)
    peak_main = peak_child = 0.0
    while p.poll() is None:
        try:
            peak_main = max(peak_main, proc.memory_info().rss / 2**20)
            for ch in proc.children(recursive=True):
                peak_child = max(peak_child, ch.memory_info().rss / 2**20)
        except psutil.Error:
            pass
        time.sleep(0.2)
    out, err = p.communicate()
    r1 = os.times()
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"bench_dask: {' '.join(cmd)} failed ({p.returncode}): {err[-500:]}")
    cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    return wall, cpu, out, peak_main, peak_child


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/icv_bench_fleet"))
    ap.add_argument("--spacing", type=float, default=130.0)
    ap.add_argument("--points", type=int, default=5_000_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--matcher", default="hmm")
    args = ap.parse_args()
    net_p, base_p = prepare(args.work, args.spacing, 100)
    log_p = tiled_log(base_p, args.points, args.work)
    icv = str(Path(sys.executable).parent / "icv")
    base = [icv, "fleet", "mileage", str(log_p), "--source", str(net_p), "--zone", "jiading",
            "--matcher", args.matcher, "--format", "json", "-o", os.devnull]
    one_cmd, dask_cmd = base, base + ["--scheduler", f"local:{args.workers}"]
    rows = []
    for i in range(args.runs):
        for label, cmd in (("one process", one_cmd), (f"--scheduler local:{args.workers}", dask_cmd)):
            wall, cpu, _, rss_main, rss_child = run(cmd)
            rows.append((i, label, wall, cpu, rss_main, rss_child))
            print(f"run {i} {label}: wall {wall:.1f} s, cpu {cpu:.1f} s, peak RSS main {rss_main:.0f} MiB, "
                  f"largest worker {rss_child:.0f} MiB, load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
    one = [r for r in rows if r[1] == "one process"]
    dsk = [r for r in rows if r[1] != "one process"]
    ratios = [a[2] / b[2] for a, b in zip(one, dsk, strict=True)]
    print("| points | workers | one process wall s | dask wall s | speed-up (pairs, median) | one cpu s | dask cpu s "
          "| one process peak RSS MiB | dask: main / largest worker peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.points:,} | {args.workers} | {statistics.median(r[2] for r in one):.1f} | "
          f"{statistics.median(r[2] for r in dsk):.1f} | {statistics.median(ratios):.2f} | "
          f"{statistics.median(r[3] for r in one):.1f} | {statistics.median(r[3] for r in dsk):.1f} | "
          f"{max(r[4] for r in one):.0f} | {max(r[4] for r in dsk):.0f} / {max(r[5] for r in dsk):.0f} |")
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
