#!/usr/bin/env python3
"""Cluster benchmark: ``--store --cluster`` with two Dask workers against ``-j 2`` and one association.

usage: python bench/cluster.py [--repeat N]

The 2,000 small files of the benchmark set to DCMTK ``storescp --ignore`` on loopback:
one association, ``-j 2`` in one process, and ``--cluster`` with a local ``dask
scheduler`` and two ``dask worker`` processes (one thread each).  Whole processes.
The client's fixed cost is measured alone (a process that imports Dask's client and
connects to the scheduler); the overhead per share is the cluster's time less that
fixed cost and ``-j 2``'s time, over the number of shares.  On two cores the aim is
parity with ``-j 2``.  Asserts nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import measure  # noqa: E402
from peers import free_port  # noqa: E402
from store import ensure_data  # noqa: E402


def main() -> int:
    args = measure.common_arguments(__doc__, HERE / "data")
    small = ensure_data(args.data) / "small"
    count = len(list(small.iterdir()))
    port, dask_port = free_port(), free_port()
    address = f"tcp://127.0.0.1:{dask_port}"
    processes = [subprocess.Popen(["/usr/bin/storescp", "--ignore", str(port)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL),
                 subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
                                   str(dask_port), "--no-dashboard"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)]
    processes += [subprocess.Popen([sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
                                    "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(2)]
    try:
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        base = [sys.executable, "-m", "dicomscu", "--store", "--no-progress", "127.0.0.1", str(port), str(small)]
        runs = {"one association": base, "-j 2": base + ["-j", "2"], "--cluster, 2 workers": base + ["--cluster",
                                                                                                        address]}
        print(f"{count} small files -> storescp --ignore (loopback), whole processes:")
        times = {}
        for name, command in runs.items():
            times[name] = min(measure.run(command).seconds for _ in range(args.repeat))
            print(f"  {name:<22} {times[name]:6.2f} s")
        connect = [sys.executable, "-c", f"from distributed import Client; Client({address!r}).close()"]
        fixed = min(measure.run(connect).seconds for _ in range(args.repeat))
        print(f"  {'(client start: import Dask, connect)':<38} {fixed:6.2f} s")
        shares = max(8, -(-count // 200))
        cluster = times["--cluster, 2 workers"]
        print(f"  cluster / -j 2: {cluster / times['-j 2']:.2f}x; without the client start "
              f"{(cluster - fixed) / times['-j 2']:.2f}x; overhead per share "
              f"~{(cluster - fixed - times['-j 2']) / shares * 1000:.0f} ms ({shares} shares)")
    finally:
        for process in processes:
            process.kill()
            process.wait()
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
