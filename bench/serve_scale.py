#!/usr/bin/env python3
"""serve's queries at archive scale: QIDO-RS pages and C-FIND over an index of N instances (default 100,000).

usage: python bench/serve_scale.py [--instances N] [--repeat R]

The index is filled directly (1,000 patients, 1,000 instances each spread over 10 studies and 100 series):
queries read the index only, never the files, so no file is written.  serve runs as a process of its own
(``dicomscu serve --http``); each request is timed from the client (best of R), and serve's peak RSS is read
from /proc at the end.  What it shows: a page costs its page (``limit=1`` does not scan the archive), an
offset costs the rows it skips, a whole answer is streamed (serve's memory stays flat in answer size).
Asserts nothing.
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        storage = Path(folder) / "storage"
        storage.mkdir()
        started = time.perf_counter()
        fill(storage, args.instances)
        print(f"index of {args.instances:,} instances filled in {time.perf_counter() - started:.1f} s")
        port, http_port = free_port(), free_port()
        serve = subprocess.Popen([sys.executable, "-m", "dicomscu", "serve", "--port", str(port), "--http",
                                  str(http_port), "--storage", str(storage)], stderr=subprocess.DEVNULL)
        try:
            wait_for_port(http_port, serve)
            base = f"http://127.0.0.1:{http_port}/dicom-web"
            print(f"{'request':45} {'answers':>8} {'best s':>8}")
            for query in QUERIES:
                best, answers = float("inf"), 0
                for _ in range(args.repeat):
                    began = time.perf_counter()
                    with urllib.request.urlopen(base + query, timeout=600) as response:
                        answers = len(json.loads(response.read() or b"[]"))
                    best = min(best, time.perf_counter() - began)
                print(f"{query:45} {answers:>8} {best:>8.3f}")
            def whole(*args: str) -> tuple[float, str]:
                best, out = float("inf"), ""
                for _ in range(args and 3 or 1):
                    began = time.perf_counter()
                    out = subprocess.run([sys.executable, "-m", "dicomscu", *args], capture_output=True, text=True,
                                         check=True).stdout
                    best = min(best, time.perf_counter() - began)
                return best, out

            echo, _ = whole("127.0.0.1", str(port))
            print(f"{'echo (whole process)':45} {'':>8} {echo:>8.3f}")
            middle = args.instances // 2
            for level, key in (("--patient", "PatientID=P%04d" % (middle // 1000)),
                               ("--study", "StudyInstanceUID=1.2.3.%d" % (middle // 100)),
                               ("--study", "AccessionNumber=ACC%07d" % (middle // 100)),
                               ("--study", "StudyDate=20200301-20200305")):
                seconds, out = whole("--find", level, "--studyroot" if level == "--study" else "--patientroot",
                                     "127.0.0.1", str(port), "-k", key, "--format", "json")
                label = f"C-FIND {level[2:]} {key.split('=')[0]} (over the echo)"
                print(f"{label:45} {len(json.loads(out)):>8} {seconds - echo:>8.3f}")
            print(f"serve peak RSS: {peak_rss_mb(serve.pid):.0f} MB")
        finally:
            serve.terminate()
            serve.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
