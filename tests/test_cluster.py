"""``--store --cluster``: a real Dask scheduler and two workers on loopback; every instance arrives, a worker
killed mid-run costs nothing but a re-run of its share (its journal skipping what was stored)."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
from collections import Counter
from typing import Callable

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
    received.spans = {}  # type: ignore[attr-defined]  # association -> (first, last) store time
    numbers = itertools.count()

    def on_store(event):
        time.sleep(0.03)
        received[event.request.AffectedSOPInstanceUID] += 1
        now = time.monotonic()
        if not hasattr(event.assoc, "number"):  # (id() of a finished association may be reused)
            event.assoc.number = next(numbers)  # type: ignore[attr-defined]
        first, _ = received.spans.get(event.assoc.number, (now, now))  # type: ignore[attr-defined]
        received.spans[event.assoc.number] = (first, now)  # type: ignore[attr-defined]
        return 0x0000

    with storage_scp("SLOW", [SecondaryCaptureImageStorage, CTImageStorage], on_store) as port:
        yield port, received


def _serve(tmp_path, **config):
    from dicomscu.server.pacs import Pacs, ServerConfig

    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"), **config))
    server.start()
    return server


def test_store_on_the_cluster_every_instance_once(cluster, slow_scp, dataset_dir, tmp_path):
    address, _ = cluster
    port, received = slow_scp
    journal = tmp_path / "journal.sqlite"
    result = run_dicomscu("--store", "-r", "127.0.0.1", str(port), str(dataset_dir), "--cluster", address,
                          "--journal", str(journal), "-j", "3", "--max-associations-per-peer", "2", timeout=180)
    files = list(dataset_dir.rglob("*.dcm"))
    assert result.returncode == 0, result.stderr
    assert f"{len(files)} of {len(files)} file(s) stored" in result.stdout
    assert len(received) == len(files) and set(received.values()) == {1}
    # two workers with -j 3 each, but never more than 2 associations storing at once
    spans = sorted(received.spans.values())  # type: ignore[attr-defined]
    assert max(sum(1 for first, last in spans if first <= start <= last) for start, _ in spans) <= 2
    again = run_dicomscu("--store", "-r", "127.0.0.1", str(port), str(dataset_dir), "--cluster", address,
                         "--journal", str(journal), timeout=180)  # the merged journal: nothing sent again
    assert again.returncode == 0 and f"{len(files)} already stored (journal)" in again.stdout
    assert set(received.values()) == {1}


def _under_way(args: list[str], arrived: Callable[[], int], count: int) -> subprocess.Popen:
    """dicomscu `args` in a process of its own, returned once `arrived()` (instances) reaches `count`."""
    run = subprocess.Popen([sys.executable, "-m", "dicomscu", *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while arrived() < count and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.02)
    return run


def _store_under_way(address: str, port: int, received: Counter, dataset_dir, files: int) -> subprocess.Popen:
    """A `--store --cluster` run in a process of its own, returned once the SCP has `files` instances."""
    return _under_way(["--store", "-r", "127.0.0.1", str(port), str(dataset_dir), "--cluster", address],
                      lambda: sum(received.values()), files)


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


def test_store_results_stream_back_as_each_file_is_stored(cluster, dataset_dir):
    """--format json on a cluster: a file's result is printed once the peer confirms it, while the rest of
    its share is still being sent; each file is in the document once."""
    import json
    import os
    import threading

    from pynetdicom.sop_class import CTImageStorage, SecondaryCaptureImageStorage

    from dicomscu.operations.cluster import _shares

    address, _ = cluster
    first = _shares([str(dataset_dir)], True, print, 2)[0]  # what the run's first share will be
    held, release = first[-1], threading.Event()
    held_uid = __import__("pydicom").dcmread(held, stop_before_pixels=True).SOPInstanceUID

    def on_store(event):
        if event.request.AffectedSOPInstanceUID == held_uid:
            release.wait(60)
        return 0x0000

    with storage_scp("HOLD", [SecondaryCaptureImageStorage, CTImageStorage], on_store) as port:
        run = subprocess.Popen([sys.executable, "-m", "dicomscu", "--store", "-r", "127.0.0.1", str(port),
                                str(dataset_dir), "--cluster", address, "--format", "json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        printed = bytearray()
        reader = threading.Thread(target=lambda: [printed.extend(chunk) for chunk in iter(
            lambda: os.read(run.stdout.fileno(), 65536), b"")], daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while json.dumps(first[0]).encode() not in printed and time.monotonic() < deadline:
            time.sleep(0.05)
        streamed = json.dumps(first[0]).encode() in printed and json.dumps(held).encode() not in printed
        release.set()
        run.wait(timeout=180)
        reader.join(10)
    assert streamed, "the first file of a share was not reported while the share was still under way"
    document = json.loads(bytes(printed))
    paths = [entry["path"] for entry in document["files"]]
    assert run.returncode == 0 and sorted(paths) == sorted(str(p) for p in dataset_dir.rglob("*.dcm"))


def test_streamed_results_report_each_file_once_across_tries():
    """A try that died streamed two files; the try that finished lists all three (one refused): each is
    reported once, the refusal from the finished list; an event arriving after its share ended is dropped."""
    import pickle

    from dicomscu.operations.share_events import FileStream
    from dicomscu.operations.results import FAILED, OK, FileResult

    class Topics:  # what FileStream asks of a Dask client
        def subscribe_topic(self, topic, handler):
            self.handler = handler

    topics, reported = Topics(), []
    stream = FileStream(topics, "t", reported.append)
    a, b, c = (FileResult(name, OK, sop_instance=name) for name in "abc")
    topics.handler((0.0, ["dicomscu", 7, pickle.dumps([a, b])]))  # streamed by the try that died
    topics.handler((0.0, {"action": "add-client"}))  # one of Dask's own events on the client's topic
    stream.drain()
    assert [r.path for r in reported] == ["a", "b"]
    topics.handler((0.0, ["dicomscu", 7, pickle.dumps([a])]))  # the second try's own event, late
    stream.finish(7, [a, b, FileResult("c", FAILED, "refused")])
    topics.handler((0.0, ["dicomscu", 7, pickle.dumps([c])]))
    stream.drain()
    assert [(r.path, r.outcome) for r in reported] == [("a", OK), ("b", OK), ("c", FAILED)]


def test_a_share_runs_on_a_machine_without_the_clients_folders(slow_scp, dataset_dir, tmp_path):
    """A worker on another machine does not have the client's temporary folder for the share journals: the
    share makes it there, and stores (a worker is only a Python process: the share runs here, outside Dask)."""
    from dicomscu import Peer
    from dicomscu.operations.cluster import store_share

    port, received = slow_scp
    files = sorted(str(path) for path in (dataset_dir / "small").iterdir())[:3]
    elsewhere = tmp_path / "not-here" / "dicomscu-shares-x" / "share-000000.sqlite"
    results = store_share(Peer("127.0.0.1", port), files, 1, str(elsewhere), None, None)
    assert [result.outcome for result in results] == ["ok"] * 3 and len(received) == 3
    again = store_share(Peer("127.0.0.1", port), files, 1, str(elsewhere), None, None)  # a second try of it
    assert [result.outcome for result in again] == ["ok"] * 3 and sum(received.values()) == 3


def test_a_scheduler_lost_mid_run_is_one_clear_line(slow_scp, dataset_dir):
    """The Dask scheduler killed mid-store: no hang and no traceback, but the summary of what was stored
    (and what was not sent) and one line saying what happened, exit 3 (a connection failed)."""
    port, received = slow_scp
    scheduler_port = free_port()
    address = f"tcp://127.0.0.1:{scheduler_port}"
    scheduler = _start(["scheduler", "--host", "127.0.0.1", "--port", str(scheduler_port), "--no-dashboard"])
    worker = _start(["worker", address, "--nthreads", "1", "--no-dashboard"])
    try:
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(1, timeout=60)
        run = _store_under_way(address, port, received, dataset_dir, 5)
        confirmed = len(received)  # stored before the scheduler goes: the summary counts at least these
        scheduler.kill()
        stdout, stderr = run.communicate(timeout=120)
    finally:
        for process in (worker, scheduler):
            process.kill()
            process.wait()
    files = len(list(dataset_dir.rglob("*.dcm")))
    assert run.returncode == 3, stdout + stderr
    assert "the connection to the Dask scheduler was lost mid-run" in stderr and "Traceback" not in stderr, stderr
    stored = int(re.search(rf": (\d+) of {files} file\(s\) stored", stdout).group(1))  # type: ignore[union-attr]
    # what the peer confirmed is told (from the share journals), never "stored 0" after hundreds
    assert confirmed <= stored <= len(received), (stored, confirmed, len(received), stdout)
    assert " not sent" in stdout, stdout


def test_a_cluster_without_workers_ends_the_run_instead_of_waiting(dataset_dir, monkeypatch):
    """No worker connected (none started, or all gone): the tasks would wait forever; the run ends after
    NO_WORKERS seconds with one line saying why, every file counted as not sent."""
    import dicomscu
    from dicomscu.errors import ConnectionFailed
    from dicomscu.operations import cluster as module

    monkeypatch.setattr(module, "NO_WORKERS", 1.0)
    monkeypatch.setattr(module, "WORKER_CHECK", 0.2)
    scheduler_port = free_port()
    address = f"tcp://127.0.0.1:{scheduler_port}"
    scheduler = _start(["scheduler", "--host", "127.0.0.1", "--port", str(scheduler_port), "--no-dashboard"])
    try:
        with distributed.Client(address, timeout="30s"):
            pass  # (up)
        started = time.monotonic()
        report = dicomscu.store_on_cluster(dicomscu.Peer("127.0.0.1", free_port()), [str(dataset_dir)],
                                           scheduler=address, recursive=True)
    finally:
        scheduler.kill()
        scheduler.wait()
    assert isinstance(report.error, ConnectionFailed) and "no Dask worker" in str(report.error), report.error
    assert report.not_sent == len(list(dataset_dir.rglob("*.dcm"))) and time.monotonic() - started < 30


def test_shares_are_balanced_and_bounded():
    """At least four shares per worker, and never more than the cap per share (a lost share is a small loss,
    the end of a long run stays balanced)."""
    from dicomscu.operations.cluster import SHARE_SERIES, _share_size

    assert _share_size(48, 2) == 6 and _share_size(3, 2) == 1 and _share_size(0, 0) == 1
    assert _share_size(1_000_000, 2, SHARE_SERIES) == SHARE_SERIES
    assert _share_size(1_000, 10, SHARE_SERIES) == 25


def test_cluster_usage_errors():
    assert run_dicomscu("--find", "h", "1", "--cluster", "tcp://127.0.0.1:1").returncode == 2
    result = run_dicomscu("--store", "127.0.0.1", "1", "f.dcm", "--max-associations-per-peer", "2")
    assert result.returncode == 2 and "with --cluster" in result.stderr
    result = run_dicomscu("--move", "--study", "--studyroot", "127.0.0.1", "1", "-k", "20,d=1.2",
                          "--cluster", "tcp://127.0.0.1:1")
    assert result.returncode == 2 and "--move-dest" in result.stderr, result.stderr
    result = run_dicomscu("--get", "--study", "--studyroot", "http://127.0.0.1:1/dicom-web", "-k", "20,d=1.2",
                          "--cluster", "tcp://127.0.0.1:1")
    assert result.returncode == 2 and "not a DICOMweb URL" in result.stderr and "-j N" in result.stderr


def test_get_on_the_cluster_series_by_series(cluster, dataset_dir, tmp_path):
    """--find ... --then get --cluster: the studies' series in shares, each C-GET by a worker into the same
    folder; every instance arrives, as one whole file."""
    address, _ = cluster
    server = _serve(tmp_path)
    host = ("127.0.0.1", str(server.port), "--call", "DICOMSCU")
    find_then_get = ("--find", "--study", "--studyroot", *host, "-k", "PatientID", "--then", "get")
    try:
        assert run_dicomscu("--store", "-r", *host, str(dataset_dir)).returncode == 0
        out = tmp_path / "out"
        result = run_dicomscu(*find_then_get, "--cluster", address, "-o", str(out), "--accept-all-syntaxes",
                              timeout=180)
        one = next(out.rglob("*.dcm"))
        one.unlink()  # then --skip-existing fetches that one alone, on the cluster or not
        again = [run_dicomscu(*find_then_get, *cluster, "-o", str(out), "--accept-all-syntaxes", "--skip-existing",
                              timeout=180) for cluster in (("--cluster", address), ())]
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr

    assert dataset_digests(out.rglob("*.dcm")) == dataset_digests(dataset_dir.rglob("*.dcm"))
    assert not list(out.rglob("*.part"))
    files = len(list(dataset_dir.rglob("*.dcm")))
    summaries = [run.stderr.splitlines()[-1] for run in again]  # (after --find, on stderr)
    assert " 1 completed" in summaries[0] and f"{files - 1} already present (skipped)" in summaries[0], summaries
    assert "nothing to retrieve" in summaries[1] and f"{files} already present (skipped)" in summaries[1], summaries


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


def test_move_on_the_cluster_to_a_third_application_with_a_worker_killed(cluster, slow_scp, dataset_dir,
                                                                          tmp_path):
    """--find ... --then move --move-dest DEST --cluster: the series in shares, each C-MOVEd by a worker; a
    worker killed mid-run: every instance reaches DEST, and only the series in flight goes twice."""
    import pydicom

    address, workers = cluster
    port, received = slow_scp
    server = _serve(tmp_path, destinations={"SLOW": ("127.0.0.1", port)})
    host = ("127.0.0.1", str(server.port), "--call", "DICOMSCU")
    series: Counter = Counter()
    for path in dataset_dir.rglob("*.dcm"):
        series[pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID] += 1
    try:
        assert run_dicomscu("--store", "-r", *host, str(dataset_dir)).returncode == 0
        received.clear()
        run = _under_way(["--find", "--study", "--studyroot", *host, "-k", "PatientID", "--then", "move",
                          "--move-dest", "SLOW", "--cluster", address], lambda: sum(received.values()), 5)
        workers[0].kill()
        stdout, stderr = run.communicate(timeout=180)
    finally:
        server.stop()
    assert run.returncode == 0, stderr
    summary = stderr.splitlines()[-1]  # after --find, the retrieval's summary goes to stderr
    assert summary.startswith("C-MOVE") and " 0 failed" in summary, summary
    assert len(received) == sum(series.values())
    assert f" {len(received)} completed" in summary, summary  # the series a dead try moved counted, once
    assert sum(received.values()) - len(received) <= max(series.values()), received.most_common(3)


def test_retrieval_progress_comes_back_while_the_shares_run(cluster, big_set, tmp_path):
    """A C-MOVE on the cluster held by its destination after 40 instances: the progress the client reports
    already counts them, though no share (about 250 instances each) is over; then every instance is counted
    once in the summary."""
    import threading

    import dicomscu
    from pynetdicom.sop_class import SecondaryCaptureImageStorage

    address, _ = cluster
    held, release, lock = [], threading.Event(), threading.Lock()

    def on_store(event):
        with lock:
            held.append(event.request.AffectedSOPInstanceUID)
            hold = len(held) > 40
        if hold:
            release.wait(60)
        return 0x0000

    progress: list[int] = []
    with storage_scp("HOLD", [SecondaryCaptureImageStorage], on_store) as port:
        server = _serve(tmp_path, destinations={"HOLD": ("127.0.0.1", port)})
        peer = dicomscu.Peer("127.0.0.1", server.port, called_ae="DICOMSCU")
        try:
            assert dicomscu.store(peer, [str(big_set)], recursive=True).stored == 2000
            query = dicomscu.build_query("studyroot", "study", ["StudyInstanceUID"])
            studies: list = []
            dicomscu.find(peer, query, on_answer=studies.append)
            outcome: list = []
            run = threading.Thread(target=lambda: outcome.append(dicomscu.retrieve_on_cluster(
                peer, query, dicomscu.RetrieveOptions(move_destination="HOLD"), studies, scheduler=address,
                operation="move", on_progress=lambda total: progress.append(total.completed))))
            run.start()
            deadline = time.monotonic() + 60
            while not (progress and progress[-1] >= 20) and time.monotonic() < deadline:
                time.sleep(0.05)
            counted_while_held = progress[-1] if progress else 0
            release.set()
            run.join(180)
        finally:
            release.set()
            server.stop()
    assert counted_while_held >= 20, progress
    assert outcome and outcome[0].completed == 2000 and outcome[0].failed == 0, outcome


@pytest.fixture
def big_set(tmp_path_factory):
    """2,000 small files in 48 series (8 patients)."""
    from dicomscu.sample import write_bench_set

    return write_bench_set(tmp_path_factory.mktemp("big_set"), big=0, small=2000, patients=8)


def test_2000_files_through_orthanc_with_a_worker_killed_each_way(cluster, clean_orthanc, big_set, tmp_path):
    """--store --cluster of 2,000 files into Orthanc, then --find ... --then get --cluster of them all, a
    worker killed mid-run each time: every instance arrives, once, whole."""
    orthanc = clean_orthanc
    address, workers = cluster
    host = ("127.0.0.1", str(orthanc.dicom_port), "--call", orthanc.aetitle)
    stored = lambda: orthanc.rest("/statistics")["CountInstances"]  # noqa: E731
    run = _under_way(["--store", "-r", *host, str(big_set), "--cluster", address, "-j", "2"], stored, 300)
    workers[0].kill()
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert "2000 of 2000 file(s) stored" in stdout and stored() == 2000

    workers[0] = _start(["worker", address, "--nthreads", "1", "--no-dashboard", "--name", "w0-again"])
    with distributed.Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    out = tmp_path / "out"
    written = lambda: sum(1 for _ in out.rglob("*.dcm")) if out.exists() else 0  # noqa: E731
    run = _under_way(["--find", "--study", "--studyroot", *host, "-k", "PatientID", "--then", "get", "-o",
                      str(out), "--cluster", address, "-j", "2"], written, 300)
    workers[1].kill()
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    files = list(out.rglob("*.dcm"))
    assert len(files) == 2000 and dataset_digests(files) == dataset_digests(big_set.rglob("*.dcm"))
    assert not list(out.rglob("*.part")) and not list(out.glob(".dicomscu-shares-*"))
    summary = stderr.splitlines()[-1]  # after --find, the retrieval's summary goes to stderr
    assert " 2000 completed" in summary and "2000 file(s) written" in summary, summary


def test_a_pacs_not_ready_yet_gets_the_shares_again_after_a_delay(cluster, dataset_dir, tmp_path):
    """The port hangs up on every association until the PACS proper starts there: the shares that failed run
    again after the back-off, and everything is stored."""
    import socket

    from dicomscu.server.pacs import Pacs, ServerConfig

    address, _ = cluster
    port = free_port()
    hang_up = socket.create_server(("127.0.0.1", port))
    run = subprocess.Popen([sys.executable, "-m", "dicomscu", "--store", "-r", "127.0.0.1", str(port),
                            str(dataset_dir), "--cluster", address, "--call", "DICOMSCU", "-W"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hang_up.settimeout(60)
    hang_up.accept()[0].close()  # a share's association: refused
    hang_up.close()
    server = Pacs(ServerConfig(port=port, host="127.0.0.1", storage=str(tmp_path / "storage")))
    server.start()
    try:
        stdout, stderr = run.communicate(timeout=120)
    finally:
        server.stop()
    files = len(list(dataset_dir.rglob("*.dcm")))
    assert run.returncode == 0, stderr
    assert f"{files} of {files} file(s) stored" in stdout
    assert "runs again in 2 s" in stderr and "Traceback" not in stderr, stderr
