"""dicomscu serve: the index and the files always agree, and no query freezes it."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, _config

import dicomscu
from dicomscu import Peer
from dicomscu.sample import SampleSpec, write_sample
from dicomscu.server.pacs import Pacs, ServerConfig

from conftest import dataset_digests, run_dicomscu
from peers import free_port

SC = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture
def pacs(tmp_path):
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage")))
    server.start()
    yield server
    server.stop()


def peer_of(server: Pacs) -> Peer:
    return Peer("127.0.0.1", server.port, called_ae="DICOMSCU")


def stored_files(server: Pacs) -> list[Path]:
    return sorted(Path(server.storage).rglob("*.dcm"))


def stored_storage(storage: Path, files: list[Path]) -> Path:
    """`storage` after a serve stored `files` into it and stopped cleanly."""
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(storage)))
    server.start()
    try:
        assert dicomscu.store(peer_of(server), [str(p) for p in files]).stored == len(files)
    finally:
        server.stop()
    return storage


def slowed_writes(index, seconds: float) -> set[str]:
    """Make each index transaction of `index` take `seconds` longer; the SOP Instance UIDs written so far,
    kept up to date (what a store may say "stored" of)."""
    write_rows = index.write_rows
    written: set[str] = set()

    def slow(rows):
        time.sleep(seconds)
        write_rows(rows)
        written.update(row["sop_uid"] for row in rows)

    index.write_rows = slow
    return written


@pytest.fixture
def sample(tmp_path) -> list[Path]:
    spec = SampleSpec(patients=2, studies=1, series=2, images=2, modalities=("CT", "MR"), matrix=16)
    return sorted(write_sample(tmp_path / "sample", spec).files)


def send_as_the_file_meta_says(server: Pacs, path: Path) -> int:
    """Store `path` with pynetdicom sending the file meta's UIDs in the command (as some senders do)."""
    ae = AE()
    meta = pydicom.dcmread(path, stop_before_pixels=True).file_meta
    ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    chunked, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMSCU")
    try:
        return assoc.send_c_store(path).Status
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = chunked
        assoc.release()


def rewritten(original: Path, folder: Path, meta_uid: str | None = None, **values) -> Path:
    ds = pydicom.dcmread(original)
    for keyword, value in values.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    if meta_uid is not None:
        ds.file_meta.MediaStorageSOPInstanceUID = meta_uid
    path = folder / f"crafted-{len(list(folder.glob('crafted-*')))}.dcm"
    ds.save_as(path, enforce_file_format=False)
    return path


@pytest.mark.parametrize("values, status", [
    ({"meta_uid": "1.2.3.4.5.6.7"}, 0xA900),                     # command UID is not the data set's
    ({"meta_uid": "1.2.3.4.5.6.8", "SOPInstanceUID": None}, 0xC000),  # the data set has none
    ({"meta_uid": "1.2.3.4.5.6.9", "SOPInstanceUID": "../../../../tmp/evil"}, 0xA900),
    ({"meta_uid": "1.2.3.4.5.6.10", "SOPInstanceUID": "x' OR 1=1 --"}, 0xA900),
])
def test_instances_whose_uids_disagree_or_are_not_uids_are_refused(pacs, sample, tmp_path, values, status):
    crafted = rewritten(sample[0], tmp_path, **values)
    assert send_as_the_file_meta_says(pacs, crafted) == status
    assert stored_files(pacs) == [] and pacs.index.count() == 0


def test_an_instance_sent_again_under_another_study_leaves_one_file(pacs, sample, tmp_path):
    assert dicomscu.store(peer_of(pacs), [str(sample[0])]).ok
    moved = rewritten(sample[0], tmp_path, StudyInstanceUID="1.2.826.0.1.3680043.10.1137.99.1")
    assert dicomscu.store(peer_of(pacs), [str(moved)]).ok
    files = stored_files(pacs)
    assert len(files) == 1 and "1.2.826.0.1.3680043.10.1137.99.1" in str(files[0])
    assert pacs.index.count() == 1
    result = pacs.index.reindex(pacs.storage)
    assert (result.indexed, result.dropped) == (1, [])


def test_reindex_reconciles_duplicate_files_and_names_them(pacs, sample):
    assert dicomscu.store(peer_of(pacs), [str(sample[0])]).ok
    [kept] = stored_files(pacs)
    stray = Path(pacs.storage) / "1.2.3" / "4.5.6" / kept.name  # an old copy nobody indexes
    stray.parent.mkdir(parents=True)
    shutil.copy(kept, stray)
    os.utime(stray, (1, 1))
    result = pacs.index.reindex(pacs.storage)
    assert result.indexed == 1 and result.dropped == [str(stray)]
    assert stored_files(pacs) == [kept]


def test_a_row_that_cannot_be_written_takes_its_file_with_it(pacs, sample):
    def full(_rows):
        raise sqlite3.OperationalError("database or disk is full")  # what SQLite raises on a full disk

    pacs.index.write_rows = full
    results = []
    dicomscu.store(peer_of(pacs), [str(sample[0])], on_result=results.append)
    assert results[0].outcome == "failed" and "0xA700" in results[0].message
    assert stored_files(pacs) == []


def test_partial_files_are_removed_at_start_and_paths_survive_a_move(tmp_path, sample):
    storage = stored_storage(tmp_path / "storage", sample)
    from dicomscu.server.pacs import CLEAN_NAME

    (storage / CLEAN_NAME).unlink()  # as a kill leaves the storage: no clean-stop mark, so the start walks it
    leftover = next(storage.rglob("*.dcm")).parent / ".dicomscu-killed.part"  # (anywhere: older versions')
    leftover.write_bytes(b"half an instance")
    (storage / ".dicomscu-123-4.part").write_bytes(b"half another")  # where serve makes its temporary files
    moved = tmp_path / "elsewhere"
    shutil.move(storage, moved)  # mv: the index must not hold absolute paths
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(moved)))
    server.start()
    try:
        assert not list(moved.rglob("*.part"))
        patient = pydicom.dcmread(sample[0]).PatientID
        out = tmp_path / "out"
        result = run_dicomscu("--get", "--patient", "--patientroot", "127.0.0.1", str(server.port),
                              "--call", "DICOMSCU", "-k", f"PatientID={patient}", "-o", str(out))
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(list(out.glob("*.dcm"))) == len(sample) // 2
    finally:
        server.stop()


def test_deflated_and_retired_class_instances_are_stored_as_received(pacs, sample, tmp_path):
    deflated = write_sample(tmp_path / "deflate", SampleSpec(patients=1, series=1, images=1, matrix=16, seed=5),
                            compress=("deflate",)).files[1]
    retired = rewritten(sample[1], tmp_path, SOPClassUID="1.2.840.10008.5.1.4.1.1.6",  # US (retired)
                        Modality="US")
    ds = pydicom.dcmread(retired)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.save_as(retired, enforce_file_format=True)
    results = []
    report = dicomscu.store(peer_of(pacs), [str(deflated), str(retired)], on_result=results.append)
    assert report.stored == 2, [r.message for r in results]
    kept = {pydicom.dcmread(p).SOPInstanceUID: p for p in stored_files(pacs)}
    original = pydicom.dcmread(deflated)
    assert kept[original.SOPInstanceUID].read_bytes().endswith(deflated.read_bytes()[-200:])  # as received
    assert pydicom.dcmread(kept[original.SOPInstanceUID]).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"
    assert pacs.index.path_of(original.SOPInstanceUID) is not None


def find_json(server: Pacs, *args: str) -> list[dict]:
    result = run_dicomscu("--find", "--studyroot", "127.0.0.1", str(server.port), "--call", "DICOMSCU",
                          *args, "--format", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_modalities_in_study_matches_any_of_a_studys_modalities(pacs, tmp_path):
    samples = tmp_path / "samples"
    ct = write_sample(samples / "ct", SampleSpec(patients=1, series=1, images=1, modalities=("CT",), matrix=16))
    mr = write_sample(samples / "mr", SampleSpec(patients=1, series=1, images=1, modalities=("MR",), matrix=16,
                                                  seed=2, first_patient=10))
    both = write_sample(samples / "both", SampleSpec(patients=1, series=2, images=1, modalities=("CT", "MR"),
                                                      matrix=16, seed=3, first_patient=20))
    assert dicomscu.store(peer_of(pacs), [str(samples)], recursive=True).stored == 4

    def studies(key: str) -> set[str]:
        return {a["00100020"]["Value"][0] for a in find_json(pacs, "--study", "-k", key, "-k", "PatientID")}

    assert studies("ModalitiesInStudy=CT") == {"PID0000", "PID0020"}
    assert studies("ModalitiesInStudy=MR") == {"PID0010", "PID0020"}
    assert studies("ModalitiesInStudy=CT\\MR") == {"PID0000", "PID0010", "PID0020"}
    assert studies("ModalitiesInStudy=US") == set()
    answers = find_json(pacs, "--study", "-k", "ModalitiesInStudy=MR", "-k", "PatientID=PID0020")
    assert answers[0]["00080061"]["Value"] == ["CT", "MR"]  # the answer lists all of the study's modalities
    del ct, mr, both


def test_a_pathological_wildcard_neither_freezes_nor_slows_the_server(pacs, sample):
    assert dicomscu.store(peer_of(pacs), [str(p) for p in sample]).ok
    started = time.monotonic()
    answers = find_json(pacs, "--study", "-k", "PatientName=" + "*" * 25 + "X")
    answers += find_json(pacs, "--study", "-k", "PatientName=" + "*a" * 25 + "X")
    assert answers == []
    echo = run_dicomscu("127.0.0.1", str(pacs.port), "--call", "DICOMSCU", timeout=30)
    assert echo.returncode == 0
    assert time.monotonic() - started < 60  # a generous bound on a hang, not a timing claim


def test_wildcard_matching_agrees_with_a_regular_expression():
    import random
    import re

    from dicomscu.server.matching import wildcard_match

    rng = random.Random(7)
    for _ in range(20000):
        key = "".join(rng.choice("ab*?") for _ in range(rng.randint(0, 7)))
        value = "".join(rng.choice("abA") for _ in range(rng.randint(0, 8)))
        regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in key)
        for ignore_case in (False, True):
            expected = re.fullmatch(regex, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None
            assert wildcard_match(key, value, ignore_case) == expected, (key, value, ignore_case)


@pytest.fixture
def read_only_folder(tmp_path):
    """A read-only file system (a tmpfs mounted ro): root writes anywhere else."""
    import subprocess

    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def test_unusable_storage_is_a_usage_error_naming_it(tmp_path, read_only_folder):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    broken = tmp_path / "broken"
    (broken / "index.sqlite").mkdir(parents=True)
    cases = [(read_only_folder / "pacs", "Read-only file system"), (a_file, "not a directory"),
             (broken, "cannot open its index")]
    for storage, reason in cases:
        result = run_dicomscu("serve", "--storage", str(storage), "--port", str(free_port()), timeout=30)
        assert result.returncode == 2, result.stderr
        assert f"--storage {storage}: " in result.stderr and reason in result.stderr
        assert "internal error" not in result.stderr


def test_sigterm_while_clients_store_leaves_every_file_indexed(tmp_path):
    import signal
    import subprocess
    import sys

    from dicomscu.sample import write_bench_set
    from peers import wait_for_port

    data = write_bench_set(tmp_path / "data", big=0, small=800, patients=4)
    storage = tmp_path / "storage"
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dicomscu", "serve", "--port", str(port), "--bind",
                               "127.0.0.1", "--storage", str(storage)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    wait_for_port(port, server, timeout=30)
    clients = [subprocess.Popen([sys.executable, "-m", "dicomscu", "--store", "127.0.0.1", str(port), "--call",
                                 "DICOMSCU", "-r", str(data / "small"), "--no-progress"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while len(list(storage.rglob("*.dcm"))) < 100 and time.monotonic() < deadline:
            time.sleep(0.02)
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=30)
    finally:
        for client in clients:
            client.kill()
            client.wait()
    assert server.returncode == 0, output
    with sqlite3.connect(storage / "index.sqlite") as db:
        rows = {os.path.normpath(storage / path) for (path,) in db.execute("SELECT path FROM instances")}
    files = {os.path.normpath(p) for p in storage.rglob("*.dcm")}
    assert files == rows and len(files) >= 100
    assert not list(storage.rglob("*.part"))


@pytest.mark.parametrize("operation", ["--get", "--move"])
def test_cut_and_missing_files_are_failed_sub_operations_and_the_rest_goes(tmp_path, sample, operation):
    move_port = free_port()
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               destinations={"BACK": ("127.0.0.1", move_port)}))
    server.start()
    try:
        patient = pydicom.dcmread(sample[0]).PatientID
        mine = [p for p in sample if pydicom.dcmread(p).PatientID == patient]
        assert dicomscu.store(peer_of(server), [str(p) for p in mine]).stored == 4
        stored = stored_files(server)
        cut, gone = stored[0], stored[1]
        cut.write_bytes(cut.read_bytes()[: len(cut.read_bytes()) // 2])
        gone.unlink()
        out = tmp_path / "out"
        extra = ["--aetitle", "BACK", "--port-scp", str(move_port)] if operation == "--move" else []
        result = run_dicomscu(operation, "--patient", "--patientroot", "127.0.0.1", str(server.port),
                              "--call", "DICOMSCU", "-k", f"PatientID={patient}", "-o", str(out), "--format", "json",
                              *extra, timeout=60)
    finally:
        server.stop()
    document = json.loads(result.stdout)
    assert (document["completed"], document["failed"]) == (2, 2), document
    assert document["written"] == 2 and result.returncode == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in stored[2:])


def test_idle_and_slow_connections_do_not_lock_clients_out(tmp_path):
    """More idle connections than --max-associations, and a slowloris: both dropped by ARTIM, then clients get in."""
    import socket as sockets
    import threading

    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               max_associations=8))
    server.start()
    idle = [sockets.create_connection(("127.0.0.1", server.port)) for _ in range(12)]
    stop = threading.Event()

    def slowloris() -> None:
        with sockets.create_connection(("127.0.0.1", server.port)) as conn:
            for byte in b"\x01\x00\x00\x00\x10\x00" * 10:
                if stop.wait(2):
                    return
                try:
                    conn.send(bytes([byte]))
                except OSError:
                    return

    trickle = threading.Thread(target=slowloris, daemon=True)
    trickle.start()
    try:
        started = time.monotonic()
        while True:
            echo = run_dicomscu("127.0.0.1", str(server.port), "--call", "DICOMSCU", "--timeout", "5",
                                timeout=30)
            if echo.returncode == 0 or time.monotonic() - started > 40:
                break
            time.sleep(1)
        assert echo.returncode == 0, echo.stderr
        assert time.monotonic() - started < 30  # ARTIM is 10 s: a hang bound, not a timing claim
    finally:
        stop.set()
        for conn in idle:
            conn.close()
        server.stop()


def test_a_plain_connection_to_a_tls_port_does_not_block_tls_clients(tmp_path):
    import socket as sockets
    import subprocess

    folder = tmp_path / "pki"
    folder.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", "server.key",
                    "-out", "server.crt"], cwd=folder, check=True, capture_output=True)
    from dicomscu.transport.peer import TLS

    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               tls=TLS(cert=str(folder / "server.crt"), key=str(folder / "server.key"))))
    server.start()
    plain = sockets.create_connection(("127.0.0.1", server.port))  # sends nothing, ever
    try:
        echo = run_dicomscu("localhost", str(server.port), "--call", "DICOMSCU", "--tls", "--tls-ca",
                            str(folder / "server.crt"), "--timeout", "5", timeout=30)
        assert echo.returncode == 0, echo.stderr
    finally:
        plain.close()
        server.stop()


def test_data_sets_past_max_size_are_refused_and_never_kept(tmp_path):
    big = write_sample(tmp_path / "big", SampleSpec(patients=1, series=1, images=1, modalities=("CT",))).files[0]
    small = write_sample(tmp_path / "small", SampleSpec(patients=1, series=1, images=1, modalities=("OT",),
                                                        matrix=16, seed=3)).files[0]
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               max_size=64 << 10))
    server.start()
    try:
        results = []
        report = dicomscu.store(peer_of(server), [str(big), str(small)], on_result=results.append)
    finally:
        server.stop()
    outcome = {r.path: (r.outcome, r.message) for r in results}
    assert report.stored == 1 and outcome[str(big)][0] == "failed" and "0xA700" in outcome[str(big)][1]
    assert [p.name for p in (tmp_path / "storage").rglob("*.dcm")] == [f"{pydicom.dcmread(small).SOPInstanceUID}.dcm"]


def test_max_size_option_reads_units():
    from dicomscu.cli.serve import parse_serve

    assert parse_serve(["--max-size", "500M"]).config.max_size == 500 << 20
    assert parse_serve(["--max-size", "2g"]).config.max_size == 2 << 30
    assert parse_serve([]).config.max_size == 4 << 30


def test_max_associations_counts_established_associations_only(tmp_path):
    """--max-associations 2: two held associations, the third is rejected (transient, local limit
    exceeded), while idle connections that never associate take no slot; a slot freed is a slot again."""
    import socket as sockets

    from dicomscu.errors import AssociationRejected
    from dicomscu.protocol.negotiation import Proposal
    from dicomscu.transport.association import open_channel

    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               max_associations=2))
    server.start()
    verification = [Proposal("1.2.840.10008.1.1", ["1.2.840.10008.1.2"])]
    idle = [sockets.create_connection(("127.0.0.1", server.port)) for _ in range(5)]
    try:
        held = [open_channel(peer_of(server), verification) for _ in range(2)]
        with pytest.raises(AssociationRejected, match="transient.*local limit exceeded"):
            open_channel(peer_of(server), verification)
        held.pop().release()
        deadline = time.monotonic() + 10
        while True:  # the server counts the release once its thread has seen the connection close
            try:
                held.append(open_channel(peer_of(server), verification))
                break
            except AssociationRejected:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        for channel in held:
            channel.release()
    finally:
        for conn in idle:
            conn.close()
        server.stop()


def _large_instance(path: Path, megabytes: int) -> Path:
    """A Secondary Capture instance whose pixel data is `megabytes` MB (Explicit VR LE)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = SC, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = "BIG", "LARGE^DATASET", "OT"
    side = int((megabytes << 20) ** 0.5) // 2 * 2
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(range(256)) * (side * side // 256) + bytes(side * side % 256)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_a_large_data_set_goes_to_its_file_as_it_arrives(tmp_path):
    """serve spools a C-STORE data set to its file fragment by fragment: its peak memory grows by a
    fraction of a 160 MB instance (it held the whole data set before), and the stored file is whole."""
    import subprocess
    import sys

    big = _large_instance(tmp_path / "big.dcm", 160)
    port = free_port()
    storage = tmp_path / "storage"
    server = subprocess.Popen([sys.executable, "-m", "dicomscu", "serve", "--port", str(port), "--bind",
                               "127.0.0.1", "--storage", str(storage)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        assert "listening" in server.stdout.readline()

        def peak_kb() -> int:
            status = Path(f"/proc/{server.pid}/status").read_text()
            return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))

        before = peak_kb()
        report = dicomscu.store(Peer("127.0.0.1", port, called_ae="DICOMSCU"), [str(big)])
        grown_mb = (peak_kb() - before) / 1024
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert report.stored == 1
    (stored,) = storage.rglob("*.dcm")
    assert dataset_digests([stored]) == dataset_digests([big])  # byte for byte as sent
    assert not list(storage.rglob("*.part"))
    assert grown_mb < 60, f"serve's peak memory grew by {grown_mb:.0f} MB for a 160 MB data set"


def test_refused_and_unfinished_spooled_data_sets_leave_no_file(pacs, tmp_path):
    """Data sets past the spill-over size go to a temporary file as they arrive.  One whose UIDs are not
    the request's, and one cut off by an abort mid-transfer: no file stays, temporary or stored."""
    from dicomscu.files.probe import probe
    from dicomscu.protocol import commands
    from dicomscu.protocol.negotiation import Proposal
    from dicomscu.transport.association import open_channel

    data = _large_instance(tmp_path / "large.dcm", 12).read_bytes()
    info = probe(data)
    dataset = memoryview(data)[info.dataset_offset:]
    channel = open_channel(peer_of(pacs), [Proposal(info.sop_class, [info.transfer_syntax])])
    context = channel.accepted[0].context_id
    channel.send_encoded(context, commands.c_store_rq(1, info.sop_class, "1.2.3.998"), dataset, "C-STORE")
    assert channel.receive(1, "C-STORE").command.Status == 0xA900  # not the data set's UID: refused
    assert not list(Path(pacs.storage).rglob("*.part")) and not stored_files(pacs)
    buffers = channel.link.core.send_message(context, commands.c_store_rq(2, info.sop_class, info.sop_instance),
                                             dataset)
    channel.link.send(buffers[:-4])  # all but its last two PDUs (10 of 12 MB): past the spill-over size
    deadline = time.monotonic() + 10
    while not list(Path(pacs.storage).rglob("*.part")):  # its temporary file is open on the server
        assert time.monotonic() < deadline
        time.sleep(0.02)
    channel.abort()
    while list(Path(pacs.storage).rglob("*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not list(Path(pacs.storage).rglob("*.part")) and not stored_files(pacs)


def test_a_received_instance_is_written_before_the_write_lock_is_taken(tmp_path, dataset_dir, monkeypatch):
    """Associations storing at once write their files at once: the write lock covers only the rename into
    place and the index row (what "stored" waits for), never the writing of the file."""
    from dicomscu.files import spool as spool_module
    from dicomscu.files.probe import probe
    from dicomscu.server.pacs import Pacs, ServerConfig

    pacs = Pacs(ServerConfig(storage=str(tmp_path / "archive")))
    held_while_writing = []
    write = spool_module.Spool.write

    def watched(self, fragment):
        held_while_writing.append(pacs._write_lock.locked())
        return write(self, fragment)

    monkeypatch.setattr(spool_module.Spool, "write", watched)
    data = next(iter(sorted((dataset_dir / "small").iterdir()))).read_bytes()
    info = probe(data)
    assert pacs.store(info.sop_class, info.sop_instance, data[info.dataset_offset:], info.transfer_syntax) == 0
    assert held_while_writing == [False] and pacs.index.count() == 1
    pacs.stop()


def test_a_disk_that_fills_at_the_last_flush_keeps_nothing(tmp_path, dataset_dir, monkeypatch):
    """A write failure that shows only when the temporary file is closed (buffered data, a full disk) refuses
    the instance (0xA700): no cut file is renamed into place, no row written, no temporary file left."""
    import errno
    import os

    from dicomscu.files import spool as spool_module
    from dicomscu.files.probe import probe
    from dicomscu.server.pacs import Pacs, ServerConfig

    pacs = Pacs(ServerConfig(storage=str(tmp_path / "archive")))
    finish = spool_module.Spool.finish

    def full(self):
        finish(self)
        self.error = self.error or OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.Spool, "finish", full)
    data = next(iter(sorted((dataset_dir / "small").iterdir()))).read_bytes()
    info = probe(data)
    assert pacs.store(info.sop_class, info.sop_instance, data[info.dataset_offset:], info.transfer_syntax) == 0xA700
    left = [name for _, _, names in os.walk(tmp_path / "archive") for name in names
            if not name.startswith(("index.sqlite", ".dicomscu"))]
    assert left == [] and pacs.index.count() == 0
    pacs.stop()


def _instances(dataset_dir, count: int) -> list[tuple[str, str, bytes, str]]:
    from dicomscu.files.probe import probe

    found = []
    for path in sorted((dataset_dir / "small").iterdir())[:count]:
        data = path.read_bytes()
        info = probe(data)
        found.append((info.sop_class, info.sop_instance, data[info.dataset_offset:], info.transfer_syntax))
    return found


def test_associations_storing_at_once_share_index_transactions_and_each_hears_stored_after_its_row(
        tmp_path, dataset_dir):
    """Group commit: while one transaction is written, the rows other associations stage wait for the next
    one, written by the first of them; nobody is answered before its row is in.  A slow commit (50 ms)
    makes the sharing certain: 4 associations x 10 instances take far fewer transactions than 40."""
    import threading

    pacs = Pacs(ServerConfig(storage=str(tmp_path / "archive")))
    instances = _instances(dataset_dir, 40)
    written = slowed_writes(pacs.index, 0.05)
    told_before_written = []

    def association(share):
        for sop_class, sop_instance, data, syntax in share:
            assert pacs.store(sop_class, sop_instance, data, syntax) == 0
            if sop_instance not in written:
                told_before_written.append(sop_instance)

    threads = [threading.Thread(target=association, args=(instances[n::4],)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert told_before_written == [] and pacs.index.count() == 40 == len(stored_files(pacs))
    assert pacs.index.transactions < 30, pacs.index.transactions
    pacs.stop()


def test_a_transaction_that_fails_fails_every_row_in_it_and_no_overwrite_waits_for_it(tmp_path):
    """Rows staged together are written together or not at all: each caller hears the failure.  A decision
    that must rest on a written row (--no-overwrite's "already stored") waits for the staged one."""
    from dicomscu.server.index import COLUMNS, Index

    index = Index(str(tmp_path / "index.sqlite"))
    rows = [{column: "" for column in COLUMNS} | {"sop_uid": f"1.2.{n}", "path": f"a/{n}.dcm"} for n in range(3)]
    batches = [index.stage(row) for row in rows]
    assert batches[0] is batches[1] is batches[2] and index.path_of("1.2.1") == "a/1.dcm"  # staged: seen

    def full(_rows):
        raise sqlite3.OperationalError("database or disk is full")

    write_rows, index.write_rows = index.write_rows, full
    assert index.written_path_of("1.2.1") is None  # it waited for the batch, which failed
    for batch in batches:
        with pytest.raises(sqlite3.OperationalError):
            index.commit(batch)
    assert index.count() == 0 and index.path_of("1.2.0") is None and index.transactions == 0
    index.write_rows = write_rows
    index.add(rows[0])
    assert index.path_of("1.2.0") == "a/0.dcm" and index.transactions == 1
    index.close()


def test_closing_the_index_writes_the_rows_staged_first(tmp_path):
    """serve's stop closes the index under its write lock, after which nothing is staged; a row staged before
    (a store between its file's rename and its row) is written, not lost with the connection."""
    from dicomscu.server.index import COLUMNS, Index

    index = Index(str(tmp_path / "index.sqlite"))
    index.stage({column: "" for column in COLUMNS} | {"sop_uid": "1.2.3", "path": "a/3.dcm"})
    index.close()
    again = Index(str(tmp_path / "index.sqlite"))
    assert again.path_of("1.2.3") == "a/3.dcm" and again.count() == 1
    again.close()


def test_adoption_after_a_kill_holds_one_folder_at_a_time_not_every_indexed_path(tmp_path, sample):
    """The start after a kill looks for files without a row.  Over an index of 200,000 rows it asks the index
    folder by folder by the files' names, instead of holding every indexed path: its memory does not grow with
    the archive (the set of 200,000 paths alone took over 20 MB)."""
    import tracemalloc

    from dicomscu.server.index import _INSERT, COLUMNS, Index

    storage = stored_storage(tmp_path / "storage", sample)
    orphan = sorted(storage.rglob("*.dcm"))[0]
    index = Index(str(storage / "index.sqlite"))
    index._db.execute("DELETE FROM instances WHERE sop_uid = ?", (orphan.stem,))  # the kill came before its row
    rows = [[{"sop_uid": f"1.2.3.{n}", "study_uid": f"1.2.3.{n // 100}", "series_uid": f"1.2.3.{n // 10}",
              "patient_id": f"P{n // 1000}", "path": f"1.2.3.{n // 100}/1.2.3.{n // 10}/1.2.3.{n}.dcm"}.get(c, "")
             for c in COLUMNS] for n in range(200_000)]
    index._db.execute("BEGIN")
    index._db.executemany(_INSERT, rows)
    index._db.execute("COMMIT")
    del rows
    tracemalloc.start()
    try:
        adopted = index.adopt(str(storage))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert adopted.indexed == 1 and index.path_of(orphan.stem) == os.path.relpath(orphan, storage)
    assert peak < 4 << 20, f"{peak / 1e6:.1f} MB"
    index.close()


def test_a_file_indexed_under_another_name_or_an_absolute_path_is_known_to_adoption(tmp_path, sample):
    """--reindex indexes files wherever and however they are named (copied in by hand), and older indexes hold
    absolute paths: adoption must know such a file by its row, never take it for a stray copy of itself."""
    from dicomscu.server.index import Index

    storage = tmp_path / "storage"
    handmade = storage / "by-hand" / "IM0001.dcm"
    handmade.parent.mkdir(parents=True)
    shutil.copy(sample[0], handmade)
    absolute = storage / "old" / "x" / f"{pydicom.dcmread(sample[1]).SOPInstanceUID}.dcm"
    absolute.parent.mkdir(parents=True)
    shutil.copy(sample[1], absolute)
    index = Index(str(storage / "index.sqlite"))
    assert index.reindex(str(storage)).indexed == 2
    index._db.execute("UPDATE instances SET path = ? WHERE path = ?",
                      (str(absolute), os.path.relpath(absolute, storage)))
    adopted = index.adopt(str(storage))
    assert (adopted.indexed, adopted.dropped) == (0, [])
    assert handmade.exists() and absolute.exists() and index.count() == 2
    index.close()
