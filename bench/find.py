#!/usr/bin/env python3
"""C-FIND benchmark: dicomscu vs DCMTK findscu vs pynetdicom's findscu, in one run.

usage: python bench/find.py [--instances 10000] [--repeat N]

Starts Orthanc (temp config, loopback), loads it once with N small instances of 50
patients (``dicomscu.sample.write_bench_set``, written into bench/data/find-N/ when
missing, stored with dicomscu), then runs an image-level
find of every instance with each tool.  Prints the wall time of the whole process,
peak RSS, the number of answers, and the ratios.  Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))  # the same Orthanc launcher the tests use

import measure  # noqa: E402
from peers import Orthanc  # noqa: E402


def commands(tool: str, port: int, aet: str) -> list[str]:
    if tool == "dicomscu":
        return [sys.executable, "-m", "dicomscu", "--find", "--studyroot", "--image", "--format", "csv",
                "--call", aet, "127.0.0.1", str(port)]
    if tool == "findscu":
        return ["/usr/bin/findscu", "-S", "-aec", aet, "-k", "0008,0052=IMAGE", "-k", "0020,000D",
                "-k", "0020,000E", "-k", "0008,0018", "127.0.0.1", str(port)]
    return [sys.executable, "-m", "pynetdicom", "findscu", "-S", "-aec", aet, "-k", "QueryRetrieveLevel=IMAGE",
            "-k", "StudyInstanceUID=", "-k", "SeriesInstanceUID=", "-k", "SOPInstanceUID=", "127.0.0.1", str(port)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tools", default="dicomscu,findscu,pynetdicom")
    args = parser.parse_args()
    measure.ensure_bytecode()
    data = HERE / "data" / f"find-{args.instances}"
    if not (data / "small").is_dir():
        from dicomscu.sample import write_bench_set

        write_bench_set(data, big=0, small=args.instances, patients=50)
    import dicomscu

    with tempfile.TemporaryDirectory() as work:
        orthanc = Orthanc(Path(work) / "orthanc")
        try:
            started = time.perf_counter()
            report = dicomscu.store(dicomscu.Peer("127.0.0.1", orthanc.dicom_port, called_ae=orthanc.aetitle),
                                    [str(data / "small")])
            print(f"loaded Orthanc with {report.stored} instances in {time.perf_counter() - started:.1f} s")
            times = {}
            for tool in args.tools.split(","):
                runs = [measure.run(commands(tool, orthanc.dicom_port, orthanc.aetitle)) for _ in range(args.repeat)]
                best = min(r.seconds for r in runs)
                times[tool] = best
                answers = runs[0].stdout.count(b"\n") - 1 if tool == "dicomscu" else None
                extra = f"  {answers} answers" if answers is not None else ""
                print(f"  {tool:<11} {best:7.2f} s  {max(r.rss_mb for r in runs):5d} MB peak RSS{extra}")
            if "findscu" in times and "dicomscu" in times:
                print(f"  dicomscu / findscu: {times['dicomscu'] / times['findscu']:.2f}x (target <= 1.05)")
            if "pynetdicom" in times and "dicomscu" in times:
                print(f"  pynetdicom / dicomscu: {times['pynetdicom'] / times['dicomscu']:.1f}x (target >= 3)")
        finally:
            orthanc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
