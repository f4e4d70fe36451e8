#!/usr/bin/env python3
"""C-ECHO benchmark: the whole process of ``dicomscu HOST PORT`` against DCMTK ``echoscu``, in paired runs.

usage: python bench/echo.py [--runs 21]

Both tools echo DCMTK ``storescp --ignore -dhl`` (no reverse DNS lookup, so the
server answers at once) on a free loopback port, in turn, run after run, so that
machine noise hits both alike.  Reports the median wall time and the median CPU
time (user + system, from GNU time) of each, and their ratios.  An echo is almost
all start-up: this is the figure that says what ``import`` costs.  Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from peers import free_port  # noqa: E402

import measure  # noqa: E402


def timed(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run."""
    with tempfile.NamedTemporaryFile("w+") as out:
        started = time.perf_counter()
        completed = subprocess.run(["/usr/bin/time", "-o", out.name, "-f", "%U %S", *args],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - started
        user, system = out.read().split()[-2:]
    if completed.returncode != 0:
        print(f"  ! {args[0]} exited {completed.returncode}: {completed.stderr.decode()[-200:]}", file=sys.stderr)
    return wall, float(user) + float(system)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    measure.ensure_bytecode()
    port = free_port()
    server = subprocess.Popen(["/usr/bin/storescp", "--ignore", "-dhl", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    tools = {
        "dicomscu": [sys.executable, "-m", "dicomscu", "127.0.0.1", str(port)],
        "echoscu": ["/usr/bin/echoscu", "127.0.0.1", str(port)],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
    try:
        for run in range(args.runs):
            order = list(tools) if run % 2 == 0 else list(reversed(tools))
            for name in order:
                results[name].append(timed(tools[name]))
    finally:
        server.terminate()
        server.wait()
    medians = {name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
               for name, runs in results.items()}
    print(f"C-ECHO to storescp, {args.runs} paired runs, medians:")
    for name, (wall, cpu) in medians.items():
        print(f"  {name:<15} {wall * 1000:7.1f} ms wall  {cpu * 1000:6.1f} ms CPU")
    ours, theirs, floor = medians["dicomscu"], medians["echoscu"], medians["python -c pass"]
    print(f"  dicomscu / echoscu: {ours[0] / theirs[0]:.2f}x wall (target <= 1.2), {ours[1] * 1000:.0f} ms CPU "
          f"(target <= 60); of which the bare interpreter: {floor[1] * 1000:.0f} ms CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
