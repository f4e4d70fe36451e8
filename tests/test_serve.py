"""dicomscu serve, talked to by DCMTK and Orthanc, compared with dcmqrscp, restarted, stressed, attacked."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import SecondaryCaptureImageStorage

import dicomscu
from dicomscu import Peer

from conftest import run_dicomscu
from peers import DcmQRSCP, Orthanc, StoreSCP, free_port, need, wait_for_port


class Serve:
    """`dicomscu serve` as a user runs it: a separate process."""

    def __init__(self, storage: Path, *extra: str) -> None:
        self.port = free_port()
        self.storage = storage
        storage.parent.mkdir(parents=True, exist_ok=True)
        self.log = storage.parent / f"serve-{self.port}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dicomscu", "serve", "--port", str(self.port), "--bind", "127.0.0.1",
             "--storage", str(storage), "-V", *extra],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, timeout=30)

    @property
    def peer(self) -> Peer:
        return Peer("127.0.0.1", self.port, called_ae="DICOMSCU")

    def close(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


@pytest.fixture(scope="module")
def originals(dataset_dir) -> list[Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(dataset_dir.rglob("*.dcm"))]


@pytest.fixture(scope="module")
def destination(tmp_path_factory):
    scp = StoreSCP(tmp_path_factory.mktemp("dest") / "received", aetitle="DEST")
    yield scp
    scp.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory, dataset_dir, destination):
    """serve loaded by DCMTK storescu (interop), with DEST as a move destination."""
    server = Serve(tmp_path_factory.mktemp("serve") / "storage", "--dest", f"DEST=127.0.0.1:{destination.port}")
    subprocess.run([need("storescu"), "+sd", "+r", "-aec", "DICOMSCU", "127.0.0.1", str(server.port),
                    str(dataset_dir)], check=True, capture_output=True, timeout=120)
    yield server
    assert server.close() == 0


def find_set(peer: Peer, model: str, level: str, keys: list[str], unique: str) -> set[str]:
    found = set()
    query = dicomscu.build_query(model, level, keys, charset="ISO_IR 192")
    dicomscu.find(peer, query, on_answer=lambda ds: found.add(str(ds.get(unique, ""))))
    return found


def test_storescu_stored_everything(served, originals):
    files = [p for p in served.storage.rglob("*.dcm")]
    assert len(files) == len(originals)
    assert all(p.resolve().is_relative_to(served.storage.resolve()) for p in files)


def test_findscu_against_serve(served, originals, tmp_path):
    subprocess.run([need("findscu"), "-S", "-aec", "DICOMSCU", "-k", "0008,0052=STUDY", "-k", "0020,000D",
                    "-k", "0010,0010", "-X", "-od", str(tmp_path), "127.0.0.1", str(served.port)],
                   check=True, capture_output=True, timeout=60)
    answers = [pydicom.dcmread(p) for p in tmp_path.glob("rsp*.dcm")]
    assert {a.StudyInstanceUID for a in answers} == {ds.StudyInstanceUID for ds in originals}


def test_getscu_and_movescu_against_serve(served, originals, destination, tmp_path):
    study = originals[-1].StudyInstanceUID
    expected = {ds.SOPInstanceUID for ds in originals if ds.StudyInstanceUID == study}
    subprocess.run([need("getscu"), "-S", "-aec", "DICOMSCU", "-k", "0008,0052=STUDY", "-k", f"0020,000D={study}",
                    "-od", str(tmp_path), "127.0.0.1", str(served.port)], check=True, capture_output=True, timeout=60)
    assert {pydicom.dcmread(p).SOPInstanceUID for p in tmp_path.iterdir()} == expected
    before = destination.log_text().count("Received Store Request")
    subprocess.run([need("movescu"), "-S", "-aec", "DICOMSCU", "-aem", "DEST", "-k", "0008,0052=STUDY",
                    "-k", f"0020,000D={study}", "127.0.0.1", str(served.port)],
                   check=True, capture_output=True, timeout=60)
    import time

    time.sleep(0.5)
    assert destination.log_text().count("Received Store Request") - before == len(expected)


def test_unknown_move_destination_is_a801(served, tmp_path, originals):
    result = run_dicomscu("--move", "--study", "--studyroot", "127.0.0.1", str(served.port), "--call", "DICOMSCU",
                          "-k", f"20,d={originals[0].StudyInstanceUID}", "--aetitle", "STRANGER",
                          "--port-scp", str(free_port()), "-o", str(tmp_path))
    assert result.returncode == 1 and "0xA801" in result.stderr


QUERIES = [
    ("patientroot", "patient", ["PatientName=*"], "PatientID"),
    ("patientroot", "patient", ["PatientName=Sm*"], "PatientID"),
    ("patientroot", "patient", ["PatientID=PID000?"], "PatientID"),
    ("studyroot", "study", ["StudyDate=20240201-20240229", "PatientID=*"], "StudyInstanceUID"),
    ("studyroot", "study", ["StudyDate=20240301-"], "StudyInstanceUID"),
    ("studyroot", "series", ["Modality=OT"], "SeriesInstanceUID"),
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, dataset_dir):
    peer = DcmQRSCP(tmp_path_factory.mktemp("ref"))
    report = dicomscu.store(Peer("127.0.0.1", peer.port, called_ae=peer.aetitle), [str(dataset_dir)], recursive=True)
    assert report.ok
    yield Peer("127.0.0.1", peer.port, called_ae=peer.aetitle)
    peer.close()


@pytest.mark.parametrize("model, level, keys, unique", QUERIES)
def test_same_answers_as_dcmqrscp(served, reference, model, level, keys, unique):
    ours = find_set(served.peer, model, level, keys, unique)
    theirs = find_set(reference, model, level, keys, unique)
    assert ours == theirs and ours


def test_series_level_with_study_uid_list(served, originals):
    studies = sorted({ds.StudyInstanceUID for ds in originals})[:2]
    found = find_set(served.peer, "studyroot", "series", ["StudyInstanceUID=" + "\\".join(studies)],
                     "SeriesInstanceUID")
    assert found == {ds.SeriesInstanceUID for ds in originals if ds.StudyInstanceUID in studies}


def test_non_ascii_name_and_case_insensitive_pn(served, originals):
    found = find_set(served.peer, "patientroot", "patient", ["PatientName=*jérôme*"], "PatientID")
    assert found == {ds.PatientID for ds in originals if "Jérôme" in str(ds.PatientName)}


def test_orthanc_stores_to_and_queries_serve(tmp_path, dataset_dir):
    server = Serve(tmp_path / "storage")
    orthanc = Orthanc(tmp_path / "orthanc", modalities={"serve": ["DICOMSCU", "127.0.0.1", server.port]})
    try:
        report = dicomscu.store(Peer("127.0.0.1", orthanc.dicom_port, called_ae=orthanc.aetitle),
                                [str(dataset_dir / "small")])
        assert report.ok
        ids = orthanc.rest("/instances")
        orthanc.rest("/modalities/serve/store", method="POST", body=json.dumps(ids).encode())
        assert len(list((tmp_path / "storage").rglob("*.dcm"))) == len(ids)
        query = orthanc.rest("/modalities/serve/query", method="POST",
                             body=json.dumps({"Level": "Study", "Query": {"PatientID": "*"}}).encode())
        answers = orthanc.rest(f"/queries/{query['ID']}/answers?expand")
        studies = {a["0020,000d"]["Value"] for a in answers}
        expected = {pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID
                    for p in (dataset_dir / "small").iterdir()}
        assert studies == expected
    finally:
        orthanc.close()
        server.close()


def test_restart_keeps_index_and_reindex_finds_all(tmp_path, dataset_dir):
    storage = tmp_path / "storage"
    server = Serve(storage)
    assert dicomscu.store(server.peer, [str(dataset_dir / "small")]).stored == 60
    assert server.close() == 0
    again = Serve(storage)
    assert len(find_set(again.peer, "studyroot", "image", [], "SOPInstanceUID")) == 60
    assert again.close() == 0
    (storage / "index.sqlite").unlink()
    for extra in ("index.sqlite-wal", "index.sqlite-shm"):
        (storage / extra).unlink(missing_ok=True)
    rebuilt = Serve(storage, "--reindex")
    assert "reindexed 60 instance(s)" in rebuilt.log.read_text()
    assert len(find_set(rebuilt.peer, "studyroot", "image", [], "SOPInstanceUID")) == 60
    assert rebuilt.close() == 0


def test_concurrent_store_and_find(tmp_path, dataset_dir):
    server = Serve(tmp_path / "storage")
    errors = []
    done = threading.Event()

    def keep_finding():
        while not done.is_set():
            try:
                find_set(server.peer, "studyroot", "study", [], "StudyInstanceUID")
            except Exception as exc:  # any failure is a finding
                errors.append(exc)

    finders = [threading.Thread(target=keep_finding) for _ in range(2)]
    for thread in finders:
        thread.start()
    try:
        report = dicomscu.store(server.peer, [str(dataset_dir)], recursive=True)
    finally:
        done.set()
        for thread in finders:
            thread.join(timeout=60)
    assert report.ok and report.stored == 66
    assert not errors
    assert len(find_set(server.peer, "studyroot", "image", [], "SOPInstanceUID")) == 66
    assert server.close() == 0
    assert not list((tmp_path / "storage").rglob("*.part"))


def test_crafted_uids_cannot_escape_storage(tmp_path, dataset_dir):
    storage = tmp_path / "deep" / "storage"
    server = Serve(storage)
    ds = pydicom.dcmread(next((dataset_dir / "small").iterdir()))
    ds.StudyInstanceUID = "../../../../escape"
    ds.SeriesInstanceUID = "../x"
    ae = AE()
    ae.add_requested_context(SecondaryCaptureImageStorage, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", server.port, ae_title="DICOMSCU")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
        server.close()
    assert status.Status == 0xA900
    assert not list(tmp_path.rglob("escape*")) and not list(tmp_path.rglob("*.dcm"))


def test_no_overwrite_refuses_duplicates(tmp_path, dataset_dir):
    server = Serve(tmp_path / "storage", "--no-overwrite")
    path = str(next((dataset_dir / "small").iterdir()))
    try:
        assert dicomscu.store(server.peer, [path]).stored == 1
        results = []
        report = dicomscu.store(server.peer, [path], on_result=results.append)
    finally:
        server.close()
    assert report.counts["failed"] == 1 and "0x0111" in results[0].message


def test_demo_runs_end_to_end():
    result = run_dicomscu("demo", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every step succeeded" in result.stdout
    for command in ("$ dicomscu 127.0.0.1", "$ dicomscu --store", "$ dicomscu --find", "$ dicomscu --get",
                    "$ dicomscu --move"):
        assert command in result.stdout


def test_compressed_instances_go_decompressed_to_a_requestor_that_takes_only_uncompressed(tmp_path):
    """A C-GET (our default: Implicit VR Little Endian only) or a C-MOVE to such a destination of JPEG
    instances: serve decompresses them (the same instances, the decoder's pixels).  One whose pixel data no
    decoder reads is one failed sub-operation, the others go; over WADO-RS it cuts the answer short."""
    import numpy
    from pydicom.data import get_testdata_file
    from pydicom.encaps import encapsulate

    from dicomscu.server.pacs import Pacs, ServerConfig

    names = ("SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm", "MR_small_jp2klossless.dcm")
    originals = [pydicom.dcmread(get_testdata_file(name)) for name in names]
    study = "1.2.826.0.1.3680043.10.1137.97"
    for n, ds in enumerate(originals):  # one study, one series each
        ds.StudyInstanceUID = study
        ds.save_as(tmp_path / f"{n}.dcm")
    broken = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    broken.StudyInstanceUID, broken.SOPInstanceUID = study + ".1", study + ".1.1"
    broken.file_meta.MediaStorageSOPInstanceUID = broken.SOPInstanceUID
    broken.PixelData = encapsulate([bytes(1000)])  # a frame of zeros: no JPEG 2000 codestream
    broken.save_as(tmp_path / "broken.dcm")

    move_port = free_port()
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               http_port=free_port(), destinations={"MOVER": ("127.0.0.1", move_port)}))
    server.start()
    host = ("127.0.0.1", str(server.port), "--call", "DICOMSCU")
    url = f"http://127.0.0.1:{server.config.http_port}/dicom-web"
    try:
        stored = run_dicomscu("--store", *host, *(str(tmp_path / f"{n}.dcm") for n in range(3)),
                              str(tmp_path / "broken.dcm"))
        assert stored.returncode == 0, stored.stderr
        got = run_dicomscu("--get", "--study", "--studyroot", *host, "-k", f"StudyInstanceUID={study}",
                           "-o", str(tmp_path / "got"))
        moved = run_dicomscu("--move", "--study", "--studyroot", *host, "-k", f"StudyInstanceUID={study}",
                             "-o", str(tmp_path / "moved"), "--aetitle", "MOVER", "--port-scp", str(move_port))
        cut = run_dicomscu("--get", "--study", "--studyroot", *host, "-k", f"StudyInstanceUID={study}.1",
                           "-o", str(tmp_path / "cut"))
        web = run_dicomscu("--get", "--study", "--studyroot", url, "-k", f"StudyInstanceUID={study}.1",
                           "-o", str(tmp_path / "web"))
    finally:
        server.stop()
    for run, folder in ((got, "got"), (moved, "moved")):
        assert run.returncode == 0, run.stderr
        received = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, (tmp_path / folder).rglob("*.dcm"))}
        assert set(received) == {ds.SOPInstanceUID for ds in originals}
        for original in originals:
            copy = received[original.SOPInstanceUID]
            assert copy.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
            assert numpy.array_equal(copy.pixel_array, original.pixel_array)
            assert copy.PatientID == original.PatientID and copy.SOPClassUID == original.SOPClassUID
    assert cut.returncode == 1 and "1 failed" in cut.stdout + cut.stderr, cut.stdout + cut.stderr
    assert not list((tmp_path / "cut").rglob("*.dcm"))
    assert web.returncode != 0 and not list((tmp_path / "web").rglob("*.dcm")), web.stderr
    assert "Traceback" not in web.stderr + cut.stderr and "broke off" in web.stderr, web.stderr
