#!/usr/bin/env python3
"""serve's queries at archive scale: QIDO-RS pages and C-FIND over an index of N instances (default 100,000).

usage: python bench/serve_scale.py [--sizes 1000,10000,100000] [--repeat R] [--orthanc 10000]

For each size the index is filled directly (1,000 instances per patient, spread over 10 studies and 100 series):
queries read the index only, never the files, so no file is written.  serve runs as a process of its own
(``dicomscu serve --http``); each request is timed from the client (best of R), and serve's peak RSS is read
from /proc at the end.  What it shows: a page costs its page (``limit=1`` does not scan the archive), an
offset costs the rows it skips, a whole answer is streamed (serve's memory stays flat in answer size); the
start-up time and the index's size on disk per size.  ``--orthanc N`` then stores N real files into serve and
into Orthanc and times the same C-FINDs on both.  Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from peers import free_port, wait_for_port  # noqa: E402

QUERIES = ["/instances?limit=1", "/instances?limit=10", "/studies?PatientID=P0042", "/studies?limit=10",
           "/studies?limit=10&offset=900",
           "/instances?PatientID=P0042&limit=5", "/series?StudyInstanceUID=1.2.3.424", "/studies?PatientName=DOE^42*",
           "/studies", "/instances"]


def fill(storage: Path, count: int) -> None:
    from dicomscu.server.index import _INSERT, COLUMNS, Index

    index = Index(str(storage / "index.sqlite"))
    rows = []
    for number in range(count):
        patient, study, series = number // 1000, number // 100, number // 10
        row = {"patient_id": f"P{patient:04d}", "patient_name": f"DOE^{patient}", "study_uid": f"1.2.3.{study}",
               "series_uid": f"1.2.3.{study}.{series}", "sop_uid": f"1.2.3.{study}.{series}.{number}",
               "sop_class": "1.2.840.10008.5.1.4.1.1.7", "modality": "OT",
               "study_date": f"2020{1 + study % 12:02d}{1 + study % 28:02d}", "accession_number": f"ACC{study:07d}",
               "transfer_syntax": "1.2.840.10008.1.2.1", "path": f"x/{number}.dcm"}
        rows.append([row.get(column, "") for column in COLUMNS])
    index._db.execute("BEGIN")
    index._db.executemany(_INSERT, rows)
    index._db.execute("COMMIT")
    index.close()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


#: --no-whole: leave out the requests for the whole archive (at 10^6 they take minutes, and say nothing new).
WHOLE_SKIPPED = False


def whole(*args: str, repeat: int = 3) -> tuple[float, str]:
    """Best wall time of a whole ``dicomscu`` process, and its output."""
    best, out = float("inf"), ""
    for _ in range(repeat):
        began = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "dicomscu", *args], capture_output=True, text=True,
                             check=True).stdout
        best = min(best, time.perf_counter() - began)
    return best, out


def _timed(command: list[str], repeat: int = 3) -> tuple[float, str]:
    best, text = float("inf"), ""
    for _ in range(repeat):
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        best = min(best, time.perf_counter() - began)
        text = done.stdout + done.stderr
    return best, text


def find_over_echo(port: int, keys: list[tuple[str, str]], called: str = "ANY-SCP") -> list[tuple[str, int, float]]:
    """(label, answers, seconds over an echo) of a study-level C-FIND per key (patient level for PatientID), with
    DCMTK's findscu and echoscu: a C++ client's start-up is small and the same for both, so the difference is
    the server's work (dicomscu's own --find would add its 0.2 s import of pydicom)."""
    echo, _ = _timed(["/usr/bin/echoscu", "-aec", called, "127.0.0.1", str(port)])
    results = []
    for label, key in keys:
        level, model = ("PATIENT", "-P") if key.startswith("PatientID") else ("STUDY", "-S")
        seconds, text = _timed(["/usr/bin/findscu", "-v", model, "-aec", called, "-k", f"QueryRetrieveLevel={level}",
                                "-k", key, "127.0.0.1", str(port)])
        results.append((label, text.count("(Pending)"), seconds - echo))
    return results


def index_size_mb(storage: Path) -> float:
    return sum(path.stat().st_size for path in storage.glob("index.sqlite*")) / 1e6


def _start(storage: Path, port: int, http_port: int, log: Path) -> tuple[float, subprocess.Popen]:
    """(seconds until the DIMSE port listens, the process) of ``dicomscu serve --http`` on `storage`."""
    began = time.perf_counter()
    serve = subprocess.Popen([sys.executable, "-m", "dicomscu", "serve", "--port", str(port), "--http",
                              str(http_port), "--storage", str(storage)], stdout=subprocess.DEVNULL,
                             stderr=open(log, "w"))
    try:
        wait_for_port(port, serve, timeout=120)
    except RuntimeError:
        print(log.read_text()[-2000:])
        raise
    seconds = time.perf_counter() - began
    wait_for_port(http_port, serve)
    return seconds, serve


def one_size(count: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        storage = Path(folder) / "storage"
        storage.mkdir()
        started = time.perf_counter()
        fill(storage, count)
        filled = time.perf_counter() - started
        port, http_port = free_port(), free_port()
        first, serve = _start(storage, port, http_port, Path(folder) / "serve.log")
        serve.terminate()  # a clean stop: the next start trusts its mark and does not walk the storage
        serve.wait(timeout=30)
        start_up, serve = _start(storage, port, http_port, Path(folder) / "serve.log")
        try:
            print(f"\n{count:,} instances: index filled in {filled:.1f} s, {index_size_mb(storage):.1f} MB on disk; "
                  f"serve start-up {first:.2f} s (first: as after a kill, checks every row for adoption), "
                  f"{start_up:.2f} s after a clean stop")
            base = f"http://127.0.0.1:{http_port}/dicom-web"
            print(f"  {'request':45} {'answers':>8} {'best s':>8}")
            for query in QUERIES:
                if WHOLE_SKIPPED and query in ("/studies", "/instances"):
                    continue
                best, answers = float("inf"), 0
                for _ in range(repeat):
                    began = time.perf_counter()
                    with urllib.request.urlopen(base + query, timeout=600) as response:
                        answers = len(json.loads(response.read() or b"[]"))
                    best = min(best, time.perf_counter() - began)
                print(f"  {query:45} {answers:>8} {best:>8.3f}")
            middle = count // 2
            keys = [("C-FIND patient PatientID", "PatientID=P%04d" % (middle // 1000)),
                    ("C-FIND study StudyInstanceUID", "StudyInstanceUID=1.2.3.%d" % (middle // 100)),
                    ("C-FIND study AccessionNumber", "AccessionNumber=ACC%07d" % (middle // 100)),
                    ("C-FIND study StudyDate range", "StudyDate=20200301-20200305")]
            for label, answers, seconds in find_over_echo(port, keys):
                print(f"  {label + ' (over an echo)':45} {answers:>8} {seconds:>8.3f}")
            print(f"  serve peak RSS: {peak_rss_mb(serve.pid):.0f} MB")
        finally:
            serve.terminate()
            serve.wait(timeout=30)


def against_orthanc(count: int) -> None:
    """The same C-FINDs on the same `count` real files, stored into serve and into Orthanc."""
    from dicomscu.sample import write_bench_set

    from peers import Orthanc

    data = HERE / "data" / f"scale-{count}"
    if not (data / "small").exists():
        write_bench_set(data, big=0, small=count, patients=max(count // 1000, 1))
    keys = [("C-FIND patient PatientID", "PatientID=PID1000"),
            ("C-FIND study StudyInstanceUID", "StudyInstanceUID=1.2.826.0.1.3680043.10.1137.1.1.1000.2"),
            ("C-FIND study AccessionNumber", "AccessionNumber=ACC100002"),
            ("C-FIND study StudyDate range", "StudyDate=20250901-20250915")]
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        serve = subprocess.Popen([sys.executable, "-m", "dicomscu", "serve", "--port", str(port), "--storage",
                                  str(Path(folder) / "serve")], stderr=subprocess.DEVNULL)
        orthanc = Orthanc(Path(folder) / "orthanc")
        try:
            wait_for_port(port, serve)
            for target, called in ((port, "ANY-SCP"), (orthanc.dicom_port, "ORTHANC")):
                began = time.perf_counter()
                subprocess.run([sys.executable, "-m", "dicomscu", "--store", "--call", called, "127.0.0.1",
                                str(target), str(data / "small")], check=True, capture_output=True)
                print(f"\n{count:,} files stored into {called == 'ORTHANC' and 'Orthanc' or 'serve'} in "
                      f"{time.perf_counter() - began:.1f} s")
            ours = find_over_echo(port, keys)
            theirs = find_over_echo(orthanc.dicom_port, keys, "ORTHANC")
            print(f"  {'query (seconds over an echo)':45} {'serve':>8} {'Orthanc':>8} {'answers':>8}")
            for (label, answers, seconds), (_, their_answers, their_seconds) in zip(ours, theirs):
                print(f"  {label:45} {seconds:>8.3f} {their_seconds:>8.3f} {answers:>4}/{their_answers:<4}")
        finally:
            orthanc.close()
            serve.terminate()
            serve.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000",
                        help="archive sizes, comma-separated (1000000 for the one-off run)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--orthanc", type=int, default=10_000,
                        help="also store this many real files into serve and Orthanc and compare (0: skip)")
    parser.add_argument("--no-whole", action="store_true", help="leave out /studies and /instances (everything)")
    args = parser.parse_args()
    global WHOLE_SKIPPED
    WHOLE_SKIPPED = args.no_whole
    for count in (int(size) for size in args.sizes.split(",") if size):
        one_size(count, args.repeat)
    if args.orthanc:
        against_orthanc(args.orthanc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
