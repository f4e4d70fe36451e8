#!/usr/bin/env python3
"""serve receiving: the same 2,000 small files from the same sender to DCMTK storescp (writing files), serve and
Orthanc, and serve again with 100,000 instances already in its index.

usage: python bench/serve_ingest.py [--files 2000] [--repeat 3] [--archive 100000] [--no-orthanc] [--dir DIR]
                                   [--jobs N] [--window 32]

Each receiver gets a fresh storage per run, on the same file system; the sender is ``dicomscu --store`` (one
association), timed as a whole process (best of R).  storescp ``--ignore`` (receives, writes nothing) is the
floor: what is left above it is the receiver's own work.  "into an archive" pre-fills serve's index with
--archive rows (as bench/serve_scale.py does) before the same files are sent: ingest is flat in archive size
when that costs what an empty archive does.  ``--dir /dev/shm`` puts every storage in memory: what is left is
the receivers' CPU, without the file system's noise (creating a file costs 0.07-0.9 ms on this machine's disk,
and varies run to run more than the receivers differ).  Each run starts after ``sync``: the files of the run
before it, or the archive's index just filled, are not written back during it.  ``--jobs N`` sends over N associations at once
(storescp then forks one process per association; serve's associations share index transactions by group
commit).  The sender asks every receiver for an asynchronous operations window of ``--window`` C-STOREs
(``dicomscu --store --window``): serve grants it, storescp and Orthanc answer none and are sent one at a time,
as every sender does with them; serve one at a time (``--window 1``) is measured too.  Prints times, ratios and
serve's peak RSS; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Where the receivers' storages go (--dir).
BASE = str(HERE)
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from measure import ensure_bytecode  # noqa: E402
from peers import Orthanc, free_port, wait_for_port  # noqa: E402
from serve_scale import fill, peak_rss_mb  # noqa: E402


@contextlib.contextmanager
def _storage():
    """A fresh folder for one receiver's run, removed only when the whole benchmark ends: on an ext4 without
    a journal (this machine's), an inode freed in the last minutes is not reused, and each file created
    scans past them (``recently_deleted``), so the files one run removed would slow the next run's creates."""
    yield tempfile.mkdtemp(dir=BASE)


#: --jobs: associations the sender opens at once.
JOBS = 1
#: --window: C-STOREs the sender may have outstanding on an association, where the receiver agrees.
WINDOW = 32


def send(folder: Path, port: int, called: str = "ANY-SCP", window: int | None = None) -> float:
    os.sync()  # what an earlier run (or the archive's fill) left dirty is written back before, not during, this one
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dicomscu", "--store", "--call", called, "-j", str(JOBS), "--window",
                    str(WINDOW if window is None else window), "127.0.0.1", str(port), str(folder)],
                   check=True, capture_output=True)
    return time.perf_counter() - began


def storescp(folder: Path, *extra: str) -> float:
    with _storage() as out:
        port = free_port()
        forks = ["--fork"] if JOBS > 1 else []  # (one association at a time otherwise)
        server = subprocess.Popen(["/usr/bin/storescp", *extra, *forks, "-od", out, str(port)])
        try:
            wait_for_port(port, server)
            return send(folder, port)
        finally:
            server.terminate()
            server.wait()


def serve(folder: Path, archive: int = 0, window: int | None = None) -> tuple[float, float]:
    """(seconds, serve's peak RSS in MB)."""
    with _storage() as out:
        storage = Path(out) / "storage"
        storage.mkdir()
        if archive:
            fill(storage, archive)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "dicomscu", "serve", "--port", str(port), "--storage",
                                   str(storage)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(port, server, timeout=60)
            seconds = send(folder, port, window=window)
            return seconds, peak_rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait()


def orthanc(folder: Path) -> float:
    with _storage() as out:
        peer = Orthanc(Path(out))
        try:
            return send(folder, peer.dicom_port, "ORTHANC")
        finally:
            peer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--archive", type=int, default=100_000)
    parser.add_argument("--no-orthanc", action="store_true")
    parser.add_argument("--dir", default=str(HERE), help="where the receivers' storages go (default: bench/)")
    parser.add_argument("--jobs", type=int, default=1, help="associations the sender opens at once")
    parser.add_argument("--window", type=int, default=32, help="C-STOREs outstanding, where the receiver agrees")
    args = parser.parse_args()
    global BASE, JOBS, WINDOW
    JOBS, WINDOW = args.jobs, args.window
    with tempfile.TemporaryDirectory(dir=args.dir) as runs:
        BASE = runs
        return _measure(args)


def _measure(args) -> int:
    ensure_bytecode()
    from dicomscu.sample import write_bench_set

    data = HERE / "data" / f"ingest-{args.files}"
    if not (data / "small").exists():
        write_bench_set(data, big=0, small=args.files, patients=8)
    folder = data / "small"
    runs: dict[str, list[float]] = {}
    rss: dict[str, float] = {}
    for _ in range(args.repeat):  # interleaved: a noisy moment hits every receiver alike
        runs.setdefault("storescp --ignore (floor)", []).append(storescp(folder, "--ignore"))
        runs.setdefault("storescp (writes files)", []).append(storescp(folder))
        seconds, rss["serve"] = serve(folder)
        runs.setdefault(f"serve (writes and indexes, window {WINDOW})", []).append(seconds)
        if WINDOW > 1:
            runs.setdefault("serve, one at a time (--window 1)", []).append(serve(folder, window=1)[0])
        if args.archive:
            seconds, rss["archive"] = serve(folder, args.archive)
            runs.setdefault(f"serve into {args.archive:,} indexed", []).append(seconds)
        if not args.no_orthanc:
            runs.setdefault("Orthanc (writes and indexes)", []).append(orthanc(folder))
    best = {name: min(times) for name, times in runs.items()}
    writes = best["storescp (writes files)"]
    associations = "one association" if JOBS == 1 else f"{JOBS} associations at once"
    print(f"{args.files} small files, {associations}, best of {args.repeat} (whole sending process, "
          f"dicomscu --store --window {WINDOW})")
    for name, seconds in best.items():
        print(f"  {name:44} {seconds:7.2f} s   {seconds / writes:5.2f}x storescp writing")
    print(f"  serve peak RSS: {rss.get('serve', 0):.0f} MB (empty), {rss.get('archive', 0):.0f} MB (into the archive)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
