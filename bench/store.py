#!/usr/bin/env python3
"""C-STORE benchmark: dicomscu vs DCMTK storescu vs pynetdicom's storescu, in one run.

usage: python bench/store.py [--data DIR] [--repeat N] [--tools dicomscu,storescu,pynetdicom]

Receiver: DCMTK ``storescp --ignore`` on a free loopback port (receives everything,
writes nothing), one association per run.  Data: ``dicomscu.sample.write_bench_set``
(the generator behind ``dicomscu sample``), written into bench/data/ when missing.  For each tool and data set it prints
the wall time of the whole process, its peak RSS, and the ratio to storescu.

A benchmark, not a test: it asserts nothing about timings.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

import measure
from dicomscu.transport.ports import free_port

HERE = Path(__file__).resolve().parent


def ensure_data(directory: Path) -> Path:
    if (directory / "small").is_dir() and (directory / "big").is_dir():
        return directory
    from dicomscu.sample import write_bench_set

    print(f"generating benchmark data into {directory} ...", file=sys.stderr)
    return write_bench_set(directory)


def commands(tool: str, port: int, folder: Path) -> list[str]:
    if tool == "dicomscu":
        return [sys.executable, "-m", "dicomscu", "--store", "--no-progress", "127.0.0.1", str(port), str(folder)]
    if tool == "storescu":
        return ["/usr/bin/storescu", "+sd", "127.0.0.1", str(port), str(folder)]
    if tool == "pynetdicom":
        return [sys.executable, "-m", "pynetdicom", "storescu", "127.0.0.1", str(port), str(folder)]
    raise ValueError(tool)


def serve_run(folder: Path, repeat: int) -> float:
    """Best time of dicomscu sending `folder` to a fresh `dicomscu serve` (new storage each run)."""
    import tempfile

    best = float("inf")
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as storage:
            port = free_port()
            server = subprocess.Popen([sys.executable, "-m", "dicomscu", "serve", "--port", str(port),
                                       "--bind", "127.0.0.1", "--storage", storage],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                        break
                    except OSError:
                        time.sleep(0.1)
                best = min(best, measure.run(commands("dicomscu", port, folder)).seconds)
            finally:
                server.terminate()
                server.wait()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool and set (best is kept)")
    parser.add_argument("--tools", default="dicomscu,storescu,pynetdicom")
    parser.add_argument("--sets", default="small,big")
    parser.add_argument("--jobs", default="", help="also time dicomscu with -j N for each N listed (e.g. 2,4)")
    parser.add_argument("--serve", action="store_true",
                        help="also send each set with dicomscu to `dicomscu serve` (which stores and indexes)")
    args = parser.parse_args()
    measure.ensure_bytecode()
    data = ensure_data(args.data)
    tools = args.tools.split(",")
    port = free_port()
    scp = subprocess.Popen(["/usr/bin/storescp", "--ignore", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    results: dict[tuple[str, str], tuple[float, int]] = {}
    try:
        for name in args.sets.split(","):
            folder = data / name
            count = len(list(folder.iterdir()))
            size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
            print(f"\n{name}: {count} files, {size:.0f} MB -> storescp --ignore (loopback)")
            for tool in tools:
                runs = [measure.run(commands(tool, port, folder)) for _ in range(args.repeat)]
                seconds = min(r.seconds for r in runs)
                rss = max(r.rss_mb for r in runs)
                results[(name, tool)] = (seconds, rss)
                print(f"  {tool:<11} {seconds:8.2f} s  {rss:5d} MB peak RSS  "
                      f"{count / seconds:8.0f} files/s  {size / seconds:7.1f} MB/s")
            for jobs in [int(n) for n in args.jobs.split(",") if n]:
                runs = [measure.run(commands("dicomscu", port, folder) + ["-j", str(jobs)]) for _ in range(args.repeat)]
                seconds = min(r.seconds for r in runs)
                print(f"  dicomscu -j {jobs:<3} {seconds:8.2f} s  "
                      f"{results[(name, 'dicomscu')][0] / seconds:.2f}x the throughput of -j 1")
            if args.serve:
                seconds = serve_run(folder, args.repeat)
                results[(name, "serve")] = (seconds, 0)
                print(f"  dicomscu -> dicomscu serve  {seconds:8.2f} s  (stores and indexes every file)")
                print(f"  serve / storescp --ignore, same sender: "
                      f"{seconds / results[(name, 'dicomscu')][0]:.2f}x (target <= 1.5)")
            if "storescu" in tools and "dicomscu" in tools:
                base = results[(name, "storescu")][0]
                for tool in tools:
                    if tool != "storescu":
                        print(f"  storescu / {tool}: {base / results[(name, tool)][0]:.1f}x")
    finally:
        scp.terminate()
        scp.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
