"""Shared fixtures: generated DICOM data and the real peers the tests talk to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from peers import Orthanc, StoreSCP

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def dataset_dir(tmp_path_factory) -> Path:
    """A small deterministic data set: big/ (6 CT, Explicit LE) and small/ (60 SC, Implicit LE)."""
    from dicomscu.sample import write_bench_set

    return write_bench_set(tmp_path_factory.mktemp("data"), big=6, small=60, patients=4)


@pytest.fixture
def storescp(tmp_path):
    peer = StoreSCP(tmp_path / "received")
    yield peer
    peer.close()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    peer = Orthanc(tmp_path_factory.mktemp("orthanc"))
    yield peer
    peer.close()


@pytest.fixture
def clean_orthanc(orthanc):
    orthanc.clear()
    return orthanc


def dataset_digests(files) -> dict[str, str]:
    """SOP Instance UID -> SHA-256 of the data set (after the file meta): what a transfer must keep unchanged."""
    import hashlib

    from dicomscu.files.probe import probe

    digests = {}
    for path in files:
        data = Path(path).read_bytes()
        info = probe(data)
        digests[info.sop_instance] = hashlib.sha256(memoryview(data)[info.dataset_offset:]).hexdigest()
    return digests


def run_inprocess(*args: str, stdin: str = "", environ: dict | None = None) -> subprocess.CompletedProcess:
    """Run the command line in this process, through an injected environment (no interpreter start-up)."""
    import io
    import os

    from dicomscu.app import main
    from dicomscu.cli.environment import Environment

    out, err = io.StringIO(), io.StringIO()
    env = Environment(io.StringIO(stdin), out, err, dict(os.environ) if environ is None else environ,
                      stdout_isatty=False, stderr_isatty=False)
    code = main(list(args), env=env)
    return subprocess.CompletedProcess(["dicomscu", *args], code, out.getvalue(), err.getvalue())


def run_dicomscu(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run the real command in a subprocess (what a user runs)."""
    return subprocess.run(
        [sys.executable, "-m", "dicomscu", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
