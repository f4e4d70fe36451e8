#!/usr/bin/env python3
"""Retrieval benchmark: dicomscu --get/--move vs DCMTK getscu/movescu, in one run.

usage: python bench/retrieve.py [--set big|small] [--repeat N] [--jobs 2,4]

Loads DCMTK dcmqrscp (temp dir, loopback) with one set of the benchmark data
(``dicomscu.sample.write_bench_set``, written into bench/data/ when missing), then retrieves every patient, one command
per patient, with each tool into a fresh directory.  Prints the summed wall time of
the processes (start-up included), the files received, and ratios.  Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # the same dcmqrscp launcher the tests use

import measure  # noqa: E402
from peers import DcmQRSCP, free_port  # noqa: E402
from store import ensure_data  # noqa: E402

MOVE_AE = "BENCHSCU"


def commands(tool: str, port: int, move_port: int, patient: str, out: Path, jobs: int = 1) -> list[str]:
    key = f"PatientID={patient}"
    if tool == "dicomscu-get":
        return [sys.executable, "-m", "dicomscu", "--get", "--patient", "--no-progress", "--call", "DCMQRSCP",
                "-k", key, "-o", str(out), "-j", str(jobs), "127.0.0.1", str(port)]
    if tool == "dicomscu-move":
        return [sys.executable, "-m", "dicomscu", "--move", "--patient", "--no-progress", "--call", "DCMQRSCP",
                "--aetitle", MOVE_AE, "--port-scp", str(move_port), "-k", key, "-o", str(out), "127.0.0.1", str(port)]
    if tool == "getscu":
        return ["/usr/bin/getscu", "-P", "-aec", "DCMQRSCP", "-k", "0008,0052=PATIENT", "-k", f"0010,0020={patient}",
                "-od", str(out), "127.0.0.1", str(port)]
    return ["/usr/bin/movescu", "-P", "-aet", MOVE_AE, "-aec", "DCMQRSCP", "-aem", MOVE_AE, "--port",
            str(move_port), "-k", "0008,0052=PATIENT", "-k", f"0010,0020={patient}", "-od", str(out),
            "127.0.0.1", str(port)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=HERE / "data")
    parser.add_argument("--set", default="big", choices=("big", "small"))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--jobs", default="2")
    args = parser.parse_args()
    measure.ensure_bytecode()
    folder = ensure_data(args.data) / args.set
    import dicomscu
    import pydicom

    patients = sorted({pydicom.dcmread(p, stop_before_pixels=True).PatientID for p in folder.iterdir()})
    move_port = free_port()
    with tempfile.TemporaryDirectory() as work:
        archive = DcmQRSCP(Path(work) / "qr", hosts={"bench": (MOVE_AE, move_port)})
        try:
            report = dicomscu.store(dicomscu.Peer("127.0.0.1", archive.port, called_ae="DCMQRSCP"), [str(folder)])
            print(f"{args.set}: {report.stored} files of {len(patients)} patients loaded into dcmqrscp")
            runs = [("getscu", 1), ("dicomscu-get", 1), ("movescu", 1), ("dicomscu-move", 1)]
            runs += [("dicomscu-get", int(n)) for n in args.jobs.split(",") if n]
            times = {}
            for tool, jobs in runs:
                best = float("inf")
                for attempt in range(args.repeat):
                    out = Path(work) / f"{tool}-{jobs}-{attempt}"
                    out.mkdir()
                    total = sum(measure.run(commands(tool, archive.port, move_port, patient, out, jobs)).seconds
                                for patient in patients)
                    best = min(best, total)
                    files = sum(1 for p in out.rglob("*") if p.is_file())
                label = tool + (f" -j {jobs}" if jobs > 1 else "")
                times[label] = best
                print(f"  {label:<18} {best:7.2f} s  {files} files")
            print(f"  getscu / dicomscu --get: {times['getscu'] / times['dicomscu-get']:.2f}x")
            print(f"  movescu / dicomscu --move: {times['movescu'] / times['dicomscu-move']:.2f}x")
        finally:
            archive.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
