"""C-FIND against DCMTK dcmqrscp and Orthanc loaded with the generated data: exact match sets."""

from __future__ import annotations

import json
import os
import sys
import subprocess

import pydicom
import pytest
from pydicom.dataset import Dataset

import dicomscu
from dicomscu import Peer

from conftest import run_dicomscu
from peers import DcmQRSCP, Orthanc, find_scp, free_port, need, stop, wait_for_port


@pytest.fixture(scope="module")
def originals(dataset_dir) -> list[Dataset]:
    return [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(dataset_dir.rglob("*.dcm"))]


def loaded(peer, port: int, dataset_dir):
    """`peer` after C-STORE of the whole generated data set with dicomscu itself."""
    report = dicomscu.store(Peer("127.0.0.1", port, called_ae=peer.aetitle), [str(dataset_dir)], recursive=True)
    assert report.ok, report
    return peer


@pytest.fixture(scope="module")
def dcmqrscp(tmp_path_factory, dataset_dir):
    peer = DcmQRSCP(tmp_path_factory.mktemp("dcmqrscp"))
    yield loaded(peer, peer.port, dataset_dir)
    peer.close()


@pytest.fixture(scope="module")
def loaded_orthanc(tmp_path_factory, dataset_dir):
    peer = Orthanc(tmp_path_factory.mktemp("orthanc-find"))
    yield loaded(peer, peer.dicom_port, dataset_dir)
    peer.close()


@pytest.fixture(params=["dcmqrscp", "orthanc"])
def qr(request):
    """(host, port, called AE) of a loaded query/retrieve SCP."""
    if request.param == "dcmqrscp":
        peer = request.getfixturevalue("dcmqrscp")
        return "127.0.0.1", peer.port, peer.aetitle
    peer = request.getfixturevalue("loaded_orthanc")
    return "127.0.0.1", peer.dicom_port, peer.aetitle


def find_json(qr, *args: str, env=None) -> list[dict]:
    host, port, aet = qr
    result = run_dicomscu("--find", host, str(port), "--call", aet, "--format", "json", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def values(answers: list[dict], tag: str) -> set[str]:
    return {item[tag]["Value"][0] for item in answers if item.get(tag, {}).get("Value")}


def test_patient_level_all(qr, originals):
    answers = find_json(qr, "--patient", "--patientroot", "-k", "10,10")
    assert values(answers, "00100020") == {ds.PatientID for ds in originals}
    assert len(answers) == len({ds.PatientID for ds in originals})


@pytest.mark.parametrize("root", ["--patientroot", "--studyroot"])
def test_study_level_all(qr, originals, root):
    extra = ["-k", "PatientID=*"] if root == "--patientroot" and qr[2] == "DCMQRSCP" else []
    answers = find_json(qr, "--study", root, "-k", "StudyDate", *extra)
    assert values(answers, "0020000D") == {ds.StudyInstanceUID for ds in originals}


def test_series_level_study_root(qr, originals):
    study = originals[0].StudyInstanceUID
    answers = find_json(qr, "--series", "--studyroot", "-k", f"20,d={study}", "-k", "8,60")
    assert values(answers, "0020000E") == {ds.SeriesInstanceUID for ds in originals if ds.StudyInstanceUID == study}


def test_image_level_patient_root(qr, originals):
    first = originals[0]
    answers = find_json(qr, "--image", "--patientroot", "-k", f"10,20={first.PatientID}",
                        "-k", f"20,d={first.StudyInstanceUID}", "-k", f"20,e={first.SeriesInstanceUID}")
    expected = {ds.SOPInstanceUID for ds in originals if ds.SeriesInstanceUID == first.SeriesInstanceUID}
    assert values(answers, "00080018") == expected and len(answers) == len(expected)


def test_image_level_study_root_adds_unique_keys(qr, originals):
    first = originals[-1]
    answers = find_json(qr, "--image", "--studyroot", "-k", f"20,d={first.StudyInstanceUID}",
                        "-k", f"20,e={first.SeriesInstanceUID}")
    assert values(answers, "00080018") == {ds.SOPInstanceUID for ds in originals
                                            if ds.SeriesInstanceUID == first.SeriesInstanceUID}


def test_wildcards(qr, originals):
    star = find_json(qr, "--patient", "-k", "10,10=Sm*")
    assert values(star, "00100020") == {ds.PatientID for ds in originals if str(ds.PatientName).startswith("Sm")}
    question = find_json(qr, "--patient", "-k", "PatientID=PID000?")
    assert values(question, "00100020") == {ds.PatientID for ds in originals if ds.PatientID.startswith("PID000")}


def test_date_range(qr, originals):
    extra = ["-k", "PatientID=*"]
    answers = find_json(qr, "--study", "--studyroot", "-k", "StudyDate=20240201-20240229", *extra)
    expected = {ds.StudyInstanceUID for ds in originals if "20240201" <= ds.StudyDate <= "20240229"}
    assert expected and values(answers, "0020000D") == expected


def test_uid_list(qr, originals):
    uids = sorted({ds.StudyInstanceUID for ds in originals})[:2]
    answers = find_json(qr, "--study", "--studyroot", "-k", "StudyInstanceUID=" + "\\".join(uids))
    assert values(answers, "0020000D") == set(uids)


def test_non_ascii_name_utf8_orthanc(loaded_orthanc, originals):
    qr = ("127.0.0.1", loaded_orthanc.dicom_port, loaded_orthanc.aetitle)
    answers = find_json(qr, "--patient", "-k", "10,10=*Jérôme*", env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert values(answers, "00100020") == {ds.PatientID for ds in originals if "Jérôme" in str(ds.PatientName)}
    names = {item["00100010"]["Value"][0]["Alphabetic"] for item in answers}
    assert names == {"Müller^Jérôme"}


def test_limit_sends_cancel(dcmqrscp, originals):
    peer = Peer("127.0.0.1", dcmqrscp.port, called_ae=dcmqrscp.aetitle)
    query = dicomscu.build_query("studyroot", "study", ["StudyDate"])
    got = []
    report = dicomscu.find(peer, query, on_answer=got.append, limit=2)
    assert len(got) == 2 and report.cancelled


def test_json_round_trip(loaded_orthanc):
    peer = Peer("127.0.0.1", loaded_orthanc.dicom_port, called_ae=loaded_orthanc.aetitle)
    query = dicomscu.build_query("studyroot", "study", ["PatientName", "StudyDate", "PatientID"])
    answers = []
    dicomscu.find(peer, query, on_answer=answers.append)
    assert answers
    for answer in answers:
        assert Dataset.from_json(json.dumps(answer.to_json_dict())) == answer


def test_csv_and_table_output(dcmqrscp):
    args = ["--find", "127.0.0.1", str(dcmqrscp.port), "--call", dcmqrscp.aetitle, "--patient", "-k", "10,10"]
    csv_result = run_dicomscu(*args, "--format", "csv")
    lines = csv_result.stdout.splitlines()
    assert lines[0] == "PatientName,PatientID" and len(lines) == 9
    table = run_dicomscu(*args, "--format", "table")  # gdcmscu's identifier: the level's own key only if asked
    assert "PatientName" in table.stdout and "PatientID" not in table.stdout
    table = run_dicomscu(*args, "-k", "10,20", "--format", "table")
    assert "PatientID" in table.stdout and "PID0000" in table.stdout


@pytest.fixture
def capturing_scp():
    """A pynetdicom FIND SCP that keeps every identifier it receives and answers none."""
    received = []

    def on_find(event):
        received.append(event.identifier)
        return
        yield  # a generator with no matches

    with find_scp("CAPTURE", on_find) as port:
        yield port, received


def test_store_query_writes_identifier(tmp_path, capturing_scp):
    port, received = capturing_scp
    path = tmp_path / "query.dcm"
    result = run_dicomscu("--find", "--patient", "--patientroot", "127.0.0.1", str(port), "--key", '10,20=*',
                          "--key", "10,10", "--store-query", str(path), env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert result.returncode == 0, result.stderr
    stored = pydicom.dcmread(path)
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert stored.SpecificCharacterSet == "ISO_IR 192" and stored.QueryRetrieveLevel == "PATIENT"
    assert stored.PatientID == "*" and stored.PatientName == ""
    assert [e.tag for e in stored] == [e.tag for e in received[0]]


def test_store_query_unwritable_is_usage_error(tmp_path):
    result = run_dicomscu("--find", "127.0.0.1", str(free_port()), "--store-query", "/nonexistent/dir/q.dcm")
    assert result.returncode == 2 and "--store-query /nonexistent/dir/q.dcm: cannot write" in result.stderr


def test_failure_status_decoded():
    def on_find(event):
        yield 0xA900, None

    with find_scp("BROKEN", on_find) as port:
        result = run_dicomscu("--find", "127.0.0.1", str(port), "-k", "10,10")
    assert result.returncode == 1
    assert "0xA900 failure: Identifier Does Not Match SOP Class" in result.stderr


def test_bad_keys_are_usage_errors():
    for key, message in [("ZZ,10=1", "neither GGGG,EEEE nor a DICOM keyword"),
                         ("NoSuchKeyword=1", "unknown keyword"),
                         ("PatientName[0].PatientID=1", "not a sequence"),
                         ("Rows=abc", "is not a whole number")]:
        result = run_dicomscu("--find", "127.0.0.1", "11112", "-k", key)
        assert result.returncode == 2, (key, result.stderr)
        assert message in result.stderr and key in result.stderr


def make_dataset(**values) -> Dataset:
    dataset = Dataset()
    for keyword, value in values.items():
        setattr(dataset, keyword, value)
    return dataset


@pytest.fixture
def worklist_scp(tmp_path):
    """DCMTK wlmscpfs serving one scheduled CT procedure step for AE WLM."""
    root = tmp_path / "worklists"
    (root / "WLM").mkdir(parents=True)
    (root / "WLM" / "lockfile").write_text("")
    step = make_dataset(
        Modality="CT", ScheduledStationAETitle="CT01", ScheduledProcedureStepStartDate="20241115",
        ScheduledProcedureStepStartTime="093000", ScheduledProcedureStepID="SPS1",
        ScheduledProcedureStepDescription="CT head", ScheduledPerformingPhysicianName="Tech^Anne",
    )
    item = make_dataset(
        SpecificCharacterSet="ISO_IR 100", PatientName="Doe^Jane", PatientID="WL0001", AccessionNumber="A123",
        StudyInstanceUID="1.2.826.0.1.3680043.10.1137.9.1", RequestedProcedureID="RP1",
        RequestedProcedureDescription="CT head", ReferringPhysicianName="Who^Dr", PatientBirthDate="19700101",
        PatientSex="F", ScheduledProcedureStepSequence=[step],
    )
    item.file_meta = pydicom.dataset.FileMetaDataset()
    item.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    item.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.31"
    item.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.1137.9.2"
    item.save_as(root / "WLM" / "item1.wl", implicit_vr=False, little_endian=True, enforce_file_format=True)
    port = free_port()
    log = (tmp_path / "wlm.log").open("w")
    process = subprocess.Popen([need("wlmscpfs"), "-dfp", str(root), str(port)], stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(port, process)
    yield port
    stop(process)


def test_worklist_by_modality_and_date(worklist_scp):
    answers = find_json(("127.0.0.1", worklist_scp, "WLM"), "--worklist",
                        "-k", "ScheduledProcedureStepSequence[0].Modality=CT",
                        "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20241101-20241130",
                        "-k", "PatientName", "-k", "PatientID")
    assert values(answers, "00100020") == {"WL0001"}
    none = find_json(("127.0.0.1", worklist_scp, "WLM"), "--worklist",
                     "-k", "ScheduledProcedureStepSequence[0].Modality=MR", "-k", "PatientID")
    assert none == []


def test_ctrl_c_sends_cancel_and_leaves_valid_json():
    """SIGINT mid-stream: C-CANCEL reaches the peer, exit 130, the JSON array is still closed."""
    import signal
    import threading
    import time

    cancelled = threading.Event()
    sent = []

    def on_find(event):
        for index in range(1000):
            sent.append(index)
            if event.is_cancelled:
                cancelled.set()
                yield 0xFE00, None
                return
            answer = Dataset()
            answer.QueryRetrieveLevel = "PATIENT"
            answer.PatientID = f"P{index:04d}"
            time.sleep(0.05)
            yield 0xFF00, answer

    with find_scp("SLOW", on_find) as port:
        process = subprocess.Popen([sys.executable, "-m", "dicomscu", "--find", "127.0.0.1", str(port),
                                    "--format", "json", "-k", "10,20"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while len(sent) < 10 and time.monotonic() < deadline:  # mid-stream, however slow the machine
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    answers = json.loads(stdout)
    assert 5 <= len(answers) < 1000
    assert cancelled.wait(5)


def test_flat_reader_agrees_with_pydicom(loaded_orthanc, dcmqrscp):
    """The byte-level JSON/CSV of every answer equals pydicom's decoding of the same bytes."""
    from dicomscu.output.answers import cell
    from dicomscu.output.flat import read_flat

    for port, aet in ((loaded_orthanc.dicom_port, loaded_orthanc.aetitle), (dcmqrscp.port, dcmqrscp.aetitle)):
        query = dicomscu.build_query("studyroot", "image", ["PatientName", "StudyDate", "SeriesNumber",
                                                            "Modality", "InstanceNumber", "PatientID"],
                                     charset="ISO_IR 192")
        answers = []
        dicomscu.find(Peer("127.0.0.1", port, called_ae=aet), query, on_answer=answers.append, raw=True)
        assert len(answers) == 66
        for answer in answers:
            syntax = answer.syntax
            flat = read_flat(answer.raw, syntax.is_implicit_VR, syntax.is_little_endian)
            assert flat is not None
            dataset = answer.dataset()
            assert Dataset.from_json(json.dumps(flat.json())) == dataset
            for _, tag in query.columns:
                assert flat.cell(tag) == cell(dataset, tag), (tag, flat.cell(tag), cell(dataset, tag))


def test_table_keeps_key_order_and_whole_uids():
    """Columns follow the -k keys (added unique keys after); a UID is never cut (folded on a terminal)."""
    from dicomscu.output.answers import TableWriter
    from dicomscu.query.build import build_query
    import io

    query = build_query("studyroot", "study", ["StudyDate", "PatientName", "ModalitiesInStudy"], charset="")
    assert [keyword for keyword, _ in query.columns] == ["StudyDate", "PatientName", "ModalitiesInStudy",
                                                         "StudyInstanceUID"]
    long_uid = "1.2.826.0.1.3680043.10.1137.1.1.0.1.2.3.4.5.6.7.8.9.10.11.12.13.14.15"

    class Answer:
        def __init__(self, uid):
            self.syntax = pydicom.uid.ImplicitVRLittleEndian
            ds = Dataset()
            ds.StudyDate, ds.PatientName, ds.ModalitiesInStudy, ds.StudyInstanceUID = "20240101", "A^B", "CT", uid
            from pydicom.filebase import DicomBytesIO
            from pydicom.filewriter import write_dataset
            buffer = DicomBytesIO()
            buffer.is_little_endian, buffer.is_implicit_VR = True, True
            write_dataset(buffer, ds)
            self.raw = buffer.getvalue()

        def dataset(self):
            return pydicom.dcmread(io.BytesIO(self.raw), force=True)

    out = io.StringIO()
    writer = TableWriter(query.columns, stream=out)
    writer.add(Answer(long_uid))
    writer.close()
    assert long_uid in out.getvalue()
