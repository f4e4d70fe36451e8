"""``--store --cluster``: a real Dask scheduler and two workers on loopback; every instance arrives, a worker
killed mid-run costs nothing but a re-run of its share (its journal skipping what was stored)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

import pytest

from conftest import dataset_digests, run_dicomscu
from peers import free_port, storage_scp

distributed = pytest.importorskip("distributed")


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


@pytest.fixture
def cluster():
    """(scheduler address, worker processes): `dask scheduler` and two `dask worker`s."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = _start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])
    workers = [_start(["worker", address, "--nthreads", "1", "--no-dashboard", "--name", f"w{n}"])
               for n in range(2)]
    try:
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers
    finally:
        for process in [*workers, scheduler]:
            process.kill()
            process.wait()


@pytest.fixture
def slow_scp():
    """A storage SCP taking 30 ms per file and counting what it receives (so a run can be cut mid-way)."""
    from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage

    received: Counter = Counter()

    def on_store(event):
        time.sleep(0.03)
        received[event.request.AffectedSOPInstanceUID] += 1
        return 0x0000

    with storage_scp("SLOW", [SecondaryCaptureImageStorage, CTImageStorage], on_store) as port:
        yield port, received


def test_store_on_the_cluster_every_instance_once(cluster, slow_scp, dataset_dir, tmp_path):
    address, _ = cluster
    port, received = slow_scp
    journal = tmp_path / "journal.sqlite"
    result = run_dicomscu("--store", "-r", "127.0.0.1", str(port), str(dataset_dir), "--cluster", address,
                          "--journal", str(journal), "--max-associations-per-peer", "2", timeout=180)
    files = list(dataset_dir.rglob("*.dcm"))
    assert result.returncode == 0, result.stderr
    assert f"{len(files)} of {len(files)} file(s) stored" in result.stdout
    assert len(received) == len(files) and set(received.values()) == {1}
    again = run_dicomscu("--store", "-r", "127.0.0.1", str(port), str(dataset_dir), "--cluster", address,
                         "--journal", str(journal), timeout=180)  # the merged journal: nothing sent again
    assert again.returncode == 0 and f"{len(files)} already stored (journal)" in again.stdout
    assert set(received.values()) == {1}


def _store_under_way(address: str, port: int, received: Counter, dataset_dir, files: int) -> subprocess.Popen:
    """A `--store --cluster` run in a process of its own, returned once the SCP has `files` instances."""
    run = subprocess.Popen([sys.executable, "-m", "dicomscu", "--store", "-r", "127.0.0.1", str(port),
                            str(dataset_dir), "--cluster", address], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while sum(received.values()) < files and time.monotonic() < deadline:
        time.sleep(0.02)
    return run


def test_a_worker_killed_mid_run_loses_nothing(cluster, slow_scp, dataset_dir):
    address, workers = cluster
    port, received = slow_scp
    files = list(dataset_dir.rglob("*.dcm"))
    run = _store_under_way(address, port, received, dataset_dir, 5)
    workers[0].kill()
    stdout, stderr = run.communicate(timeout=180)
    assert run.returncode == 0, stderr
    assert set(received) == {__import__("pydicom").dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}
    # only an instance in flight when its worker died may have gone twice (C-STORE of it again is harmless)
    assert sum(received.values()) - len(received) <= 1, received.most_common(3)


def test_cluster_usage_errors():
    assert run_dicomscu("--find", "h", "1", "--cluster", "tcp://127.0.0.1:1").returncode == 2
    result = run_dicomscu("--store", "127.0.0.1", "1", "f.dcm", "--max-associations-per-peer", "2")
    assert result.returncode == 2 and "with --cluster" in result.stderr


def test_get_on_the_cluster_series_by_series(cluster, dataset_dir, tmp_path):
    """--find ... --then get --cluster: the studies' series in shares, each C-GET by a worker into the same
    folder; every instance arrives, as one whole file."""
    from dicomscu.server.pacs import Pacs, ServerConfig

    address, _ = cluster
    server = Pacs(ServerConfig(port=free_port(), host="127.0.0.1", storage=str(tmp_path / "storage")))
    server.start()
    host = ("127.0.0.1", str(server.config.port), "--call", "DICOMSCU")
    try:
        assert run_dicomscu("--store", "-r", *host, str(dataset_dir)).returncode == 0
        out = tmp_path / "out"
        result = run_dicomscu("--find", "--study", "--studyroot", *host, "-k", "PatientID", "--then", "get",
                              "--cluster", address, "-o", str(out), "--accept-all-syntaxes", timeout=180)
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr

    assert dataset_digests(out.rglob("*.dcm")) == dataset_digests(dataset_dir.rglob("*.dcm"))
    assert not list(out.rglob("*.part"))


def test_ctrl_c_cancels_the_run(cluster, slow_scp, dataset_dir):
    """SIGINT: the client cancels the tasks not yet run and exits 130 at once; shares under way end theirs."""
    import signal

    address, _ = cluster
    port, received = slow_scp
    files = list(dataset_dir.rglob("*.dcm"))
    run = _store_under_way(address, port, received, dataset_dir, 3)
    run.send_signal(signal.SIGINT)
    stopped = time.monotonic()
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr, stderr
    assert time.monotonic() - stopped < 15
    time.sleep(3)  # the shares that were running finish; the others were cancelled
    assert sum(received.values()) < len(files), "every share ran: nothing was cancelled"
