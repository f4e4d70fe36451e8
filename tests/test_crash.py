"""The index and the files agree after any crash: a kill during --reindex leaves the old index or the new one,
a complete file that a kill left without its row is adopted at start, and one storage has one serve."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from conftest import run_dicomscu
from peers import free_port, wait_for_port

from dicomscu.errors import UsageError
from dicomscu.server.pacs import Pacs, ServerConfig


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """A storage of 1,500 instances with its index, as serve keeps it (built once, copied by each test)."""
    from dicomscu.sample import write_bench_set

    data = write_bench_set(tmp_path_factory.mktemp("crash-data"), big=0, small=1500, patients=15)
    storage = tmp_path_factory.mktemp("crash") / "storage"
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(storage)))
    server.start()
    try:
        stored = run_dicomscu("--store", "127.0.0.1", str(server.port), "--call", "DICOMSCU", "-r",
                              str(data / "small"), "-j", "2")
        assert stored.returncode == 0, stored.stderr
    finally:
        server.stop()
    return storage


def _files(storage: Path) -> set[str]:
    return {str(path.relative_to(storage)) for path in storage.rglob("*.dcm")}


def _rows(storage: Path) -> set[str]:
    server = Pacs(ServerConfig(port=0, storage=str(storage)))
    try:
        return {row["path"] for row in server.index.rows()}
    finally:
        server.index.close()
        server.release_storage()


def _serve(storage: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "dicomscu", "serve", "--port", str(port), "--bind",
                                "127.0.0.1", "--storage", str(storage), *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, port


def _wait_for_rebuild(storage: Path, process: subprocess.Popen, timeout: float = 60) -> float | None:
    """When the aside index ``index.sqlite.rebuild`` appeared (monotonic), or None if the server got past
    the rebuild (or ended) before it was seen."""
    rebuilding = storage / "index.sqlite.rebuild"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if rebuilding.exists():
            return time.monotonic()
        time.sleep(0.001)
    return None


def test_a_kill_at_any_moment_of_reindex_leaves_a_whole_index(archive, tmp_path):
    """Kills land at start-up, at spread moments of the rebuild (timed from when the aside file appears, so a
    slow or loaded machine still lands them inside it), and around the swap; each leaves a whole index."""
    storage = tmp_path / "storage"
    shutil.copytree(archive, storage)
    files = _files(storage)
    assert len(files) == 1500 and _rows(storage) == files
    rebuilding = storage / "index.sqlite.rebuild"
    process, port = _serve(storage, "--reindex")
    began = _wait_for_rebuild(storage, process)
    assert began is not None, "the rebuild was never seen"
    while rebuilding.exists():
        time.sleep(0.001)
    rebuild = time.monotonic() - began  # how long the aside index takes to build and swap in
    wait_for_port(port, process, timeout=60)
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    killed_rebuilding = 0
    moments = [None] + [rebuild * step / 10 for step in range(12)]  # None: during start-up, before the rebuild
    for moment in moments:
        process, _ = _serve(storage, "--reindex")
        if moment is None:
            time.sleep(0.05)
        else:
            began = _wait_for_rebuild(storage, process)
            if began is not None:
                time.sleep(max(0.0, began + moment - time.monotonic()))
        killed_rebuilding += rebuilding.exists()
        process.kill()
        process.wait(30)
        assert _rows(storage) == files, f"after a kill at {moment} s into the rebuild"  # a plain restart sees every file
        assert not any(storage.glob("index.sqlite.rebuild"))  # the half-built one is gone at start
    assert killed_rebuilding >= 3, "too few kills landed while the new index was being built"


def test_a_complete_file_without_its_row_is_adopted_at_start(archive, tmp_path):
    storage = tmp_path / "storage"
    shutil.copytree(archive, storage)
    orphan = next(storage.rglob("*.dcm"))
    uid = pydicom.dcmread(orphan).SOPInstanceUID
    server = Pacs(ServerConfig(port=0, storage=str(storage)))  # the row goes, as if the kill came first
    server.index._db.execute("DELETE FROM instances WHERE sop_uid = ?", (uid,))
    server.index.close()
    server.release_storage()
    # ... and an instance stored again under another study: the new file placed, the kill before its row
    moved_from = sorted(storage.rglob("*.dcm"))[-1]
    moved_to = storage / "1.2.826.0.1.3680043.10.1137.999" / "1.2.826.0.1.3680043.10.1137.999.1" / moved_from.name
    moved_to.parent.mkdir(parents=True)
    shutil.copy2(moved_from, moved_to)
    os.utime(moved_to, (time.time() + 5, time.time() + 5))
    cut = storage / "1.2.826.0.1.3680043.10.1137.998" / "cut.dcm"
    cut.parent.mkdir()
    cut.write_bytes(orphan.read_bytes()[:-100])
    import io
    import logging

    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    logger = logging.getLogger("dicomscu.server")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.WARNING
    try:
        server = Pacs(ServerConfig(port=0, storage=str(storage)))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    try:
        assert server.index.path_of(uid) == str(orphan.relative_to(storage))
        moved_uid = pydicom.dcmread(moved_to).SOPInstanceUID
        assert server.index.path_of(moved_uid) == str(moved_to.relative_to(storage))
        assert not moved_from.exists()  # the older copy of the instance went
        assert server.index.count() == 1500
    finally:
        server.index.close()
        server.release_storage()
    text = captured.getvalue()
    assert "indexed 2 complete file(s) that had no index row" in text and "cut.dcm" in text
    assert cut.exists()  # an unreadable file is left in place and named, never deleted


def test_one_storage_has_one_serve(tmp_path):
    storage = tmp_path / "storage"
    first = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(storage)))
    first.start()
    try:
        with pytest.raises(UsageError, match="in use by another dicomscu serve"):
            Pacs(ServerConfig(port=0, storage=str(storage)))
        second = run_dicomscu("serve", "--port", str(free_port()), "--storage", str(storage), timeout=60)
        assert second.returncode == 2 and f"process {os.getpid()}" in second.stderr, second.stderr
    finally:
        first.stop()
    again = Pacs(ServerConfig(port=0, storage=str(storage)))  # free once the first has stopped
    again.index.close()
    again.release_storage()


def test_a_clean_stop_spares_the_next_start_its_walk_and_a_kill_does_not(tmp_path, monkeypatch):
    """serve stopped cleanly (SIGTERM) leaves a mark: the next start removes it, reads the storage's top folder
    only (a temporary file there is still removed) and adopts nothing; a start after a kill finds no mark and
    walks the storage (adopting a file a kill left without its row)."""
    from dicomscu.server.index import Index, Reindexed
    from dicomscu.server.pacs import CLEAN_NAME

    storage = tmp_path / "storage"
    process, port = _serve(storage)
    wait_for_port(port, process, timeout=60)
    stored = run_dicomscu("--store", "127.0.0.1", str(port), "--call", "DICOMSCU", "-r",
                          str(_sample(tmp_path, 3)))
    assert stored.returncode == 0, stored.stderr
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    assert (storage / CLEAN_NAME).exists()
    walks: list[str] = []
    adopt = Index.adopt

    def counted(self, where):
        walks.append(where)
        return adopt(self, where)

    monkeypatch.setattr(Index, "adopt", counted)
    stray = storage / ".dicomscu-99999-0.part"  # a temporary file in the top folder, where serve makes them
    stray.write_bytes(b"partial")
    server = Pacs(ServerConfig(port=0, storage=str(storage)))
    assert walks == [] and not stray.exists() and not (storage / CLEAN_NAME).exists()
    assert server.index.count() == 3
    server.index.close()
    server.release_storage()  # as a kill leaves it: no mark
    process, port = _serve(storage)
    wait_for_port(port, process, timeout=60)
    process.kill()
    process.wait(30)
    assert not (storage / CLEAN_NAME).exists()  # the mark went at start, before serving
    server = Pacs(ServerConfig(port=0, storage=str(storage)))
    try:
        assert walks == [str(storage)] and server.index.count() == 3
    finally:
        server.index.close()
        server.release_storage()


def _sample(tmp_path: Path, count: int) -> Path:
    from dicomscu.sample import write_bench_set

    return write_bench_set(tmp_path / "sample", big=0, small=count, patients=1) / "small"
