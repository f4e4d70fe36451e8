"""Run one command and measure it: wall seconds, peak RSS, exit code, output.

Peak RSS comes from GNU time (``/usr/bin/time -f %M``, Debian package ``time``):
Linux keeps a process's peak RSS across fork and exec, so a child forked directly
from this (possibly large) Python process would report the parent's memory.
``time`` is small, and reports the peak of the command it starts itself.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from dataclasses import dataclass


def common_arguments(doc: str, data: "Path"):
    """The options every benchmark takes (--data, --repeat), parsed; the bytecode compiled first."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=type(data), default=data)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    ensure_bytecode()
    return args


def ensure_bytecode() -> None:
    """Compile dicomscu's modules, as ``pip install .`` does.

    An editable install (``pip install -e``, what tests/run.sh does) leaves the
    bytecode to the first import, and with PYTHONDONTWRITEBYTECODE set (this CI
    image sets it) every process would compile every module again: 50-100 ms of
    start-up no installed copy pays.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("dicomscu")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            compileall.compile_dir(folder, quiet=1)


@dataclass
class Measure:
    seconds: float
    rss_mb: int
    returncode: int
    stdout: bytes


def run(args: list[str]) -> Measure:
    with tempfile.NamedTemporaryFile("w+") as rss_file:
        started = time.perf_counter()
        completed = subprocess.run(["/usr/bin/time", "-o", rss_file.name, "-f", "%M", *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - started
        lines = rss_file.read().split()
    rss = int(lines[-1]) // 1024 if lines and lines[-1].isdigit() else -1
    if completed.returncode != 0:
        print(f"  ! {' '.join(args[:3])} exited {completed.returncode}: {completed.stderr.decode()[-300:]}",
              file=sys.stderr)
    return Measure(elapsed, rss, completed.returncode, completed.stdout)
