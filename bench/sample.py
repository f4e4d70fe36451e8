#!/usr/bin/env python3
"""Sample-data benchmark: ``dicomscu sample``'s generator against plain pydicom writing.

usage: python bench/sample.py [--big 200] [--small 2000] [--repeat N]

Writes the benchmark set (N CT slices of 512x512 and N small images) into a
temporary directory with ``dicomscu.sample.write_bench_set`` (series attributes
encoded once), then times pydicom's ``save_as`` writing the very same data sets
(read beforehand): the encoding cost a straightforward generator pays, before it
even builds its data sets.  Prints the best wall time of
each, the bytes written and the ratio.  Asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path


def pydicom_write_seconds(out: Path) -> float:
    """Time pydicom's encoding and writing of the same data sets (read beforehand, not timed)."""
    from pydicom import dcmread

    datasets = [(path, dcmread(path)) for path in sorted(out.rglob("*.dcm"))]
    started = time.perf_counter()
    for path, ds in datasets:
        ds.save_as(path, enforce_file_format=True, implicit_vr=ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=200)
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from dicomscu.sample import write_bench_set

    best = {"dicomscu.sample": float("inf"), "pydicom save_as": float("inf")}
    size = 0
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as work:
            started = time.perf_counter()
            write_bench_set(work, big=args.big, small=args.small)
            best["dicomscu.sample"] = min(best["dicomscu.sample"], time.perf_counter() - started)
            size = sum(p.stat().st_size for p in Path(work).rglob("*.dcm"))
            best["pydicom save_as"] = min(best["pydicom save_as"], pydicom_write_seconds(Path(work)))
    print(f"{args.big} CT slices 512x512 + {args.small} small images, {size / 1e6:.0f} MB, best of {args.repeat}:")
    for name, seconds in best.items():
        print(f"  {name:<26} {seconds:6.2f} s")
    print(f"  ratio: {best['pydicom save_as'] / best['dicomscu.sample']:.1f}x")
    print(f"  peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
