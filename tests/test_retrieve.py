"""C-MOVE and C-GET against dcmqrscp and Orthanc: exactly the right instances, whole files, safe names."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import ALL_TRANSFER_SYNTAXES, AE, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    SecondaryCaptureImageStorage,
)

import dicomscu
from dicomscu import Peer
from dicomscu.files.instances import InstanceWriter, safe_component

from conftest import run_dicomscu
from peers import DcmQRSCP, Orthanc, StoreSCP, free_port

OUR_AE = "DICOMSCU"


@pytest.fixture(scope="module")
def originals(dataset_dir) -> dict[str, Path]:
    return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in sorted(dataset_dir.rglob("*.dcm"))}


@pytest.fixture(scope="module")
def move_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def third_party(tmp_path_factory):
    scp = StoreSCP(tmp_path_factory.mktemp("third") / "received", aetitle="THIRD")
    yield scp
    scp.close()


def _load(port: int, aetitle: str, dataset_dir) -> None:
    report = dicomscu.store(Peer("127.0.0.1", port, called_ae=aetitle), [str(dataset_dir)], recursive=True)
    assert report.ok, report


@pytest.fixture(scope="module")
def qr_dcmqrscp(tmp_path_factory, dataset_dir, move_port, third_party):
    peer = DcmQRSCP(tmp_path_factory.mktemp("qr"), hosts={"us": (OUR_AE, move_port),
                                                          "third": ("THIRD", third_party.port)})
    _load(peer.port, peer.aetitle, dataset_dir)
    yield ("127.0.0.1", peer.port, peer.aetitle)
    peer.close()


@pytest.fixture(scope="module")
def qr_orthanc(tmp_path_factory, dataset_dir, move_port, third_party):
    peer = Orthanc(tmp_path_factory.mktemp("orthanc-qr"),
                   modalities={"us": [OUR_AE, "127.0.0.1", move_port], "third": ["THIRD", "127.0.0.1", third_party.port]})
    _load(peer.dicom_port, peer.aetitle, dataset_dir)
    yield ("127.0.0.1", peer.dicom_port, peer.aetitle)
    peer.close()


@pytest.fixture(params=["dcmqrscp", "orthanc"])
def qr(request):
    return request.getfixturevalue(f"qr_{request.param}")


def retrieve(qr, operation: str, move_port: int, out: Path, *keys: str, extra=()) -> object:
    host, port, aet = qr
    args = [f"--{operation}", host, str(port), "--call", aet, "--aetitle", OUR_AE, "-o", str(out), *extra]
    if operation == "move":
        args += ["--port-scp", str(move_port)]
    for key in keys:
        args += ["-k", key]
    return run_dicomscu(*args)


def received(out: Path) -> dict[str, Path]:
    return {pydicom.dcmread(p).SOPInstanceUID: p for p in out.rglob("*.dcm")}


def assert_identical(got: dict[str, Path], originals: dict[str, Path], expected: set[str]) -> None:
    assert set(got) == expected
    for uid in expected:
        assert pydicom.dcmread(got[uid]).PixelData == pydicom.dcmread(originals[uid]).PixelData


def pick(originals, **where):
    found = set()
    for uid, path in originals.items():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if all(str(ds.get(k)) == v for k, v in where.items()):
            found.add(uid)
    return found


def first(originals) -> Dataset:
    """An instance whose study and series hold several instances (the small set)."""
    return pydicom.dcmread(next(p for p in originals.values() if "small" in p.name), stop_before_pixels=True)


@pytest.mark.parametrize("operation", ["move", "get"])
def test_patient_level_patient_root(qr, operation, move_port, tmp_path, originals):
    ds = first(originals)
    result = retrieve(qr, operation, move_port, tmp_path, f"10,20={ds.PatientID}",
                      extra=["--patient", "--patientroot"])
    assert result.returncode == 0, result.stderr
    assert_identical(received(tmp_path), originals, pick(originals, PatientID=ds.PatientID))
    assert not list(tmp_path.rglob("*.part"))
    assert "stopping: waiting" not in result.stderr  # the peer's routine release is no warning


@pytest.mark.parametrize("operation", ["move", "get"])
@pytest.mark.parametrize("level", ["study", "series"])
def test_study_root_levels(qr, operation, level, move_port, tmp_path, originals):
    ds = first(originals)
    keys = [f"StudyInstanceUID={ds.StudyInstanceUID}"]
    if level == "series":
        keys.append(f"20,e={ds.SeriesInstanceUID}")
    result = retrieve(qr, operation, move_port, tmp_path, *keys, extra=[f"--{level}", "--studyroot"])
    assert result.returncode == 0, result.stderr
    where = {"StudyInstanceUID": ds.StudyInstanceUID} if level == "study" else {
        "SeriesInstanceUID": ds.SeriesInstanceUID}
    assert_identical(received(tmp_path), originals, pick(originals, **where))


@pytest.mark.parametrize("operation", ["move", "get"])
def test_image_level_patient_root_hierarchical(qr, operation, move_port, tmp_path, originals):
    ds = first(originals)
    result = retrieve(qr, operation, move_port, tmp_path, f"PatientID={ds.PatientID}",
                      f"StudyInstanceUID={ds.StudyInstanceUID}", f"SeriesInstanceUID={ds.SeriesInstanceUID}",
                      f"SOPInstanceUID={ds.SOPInstanceUID}", extra=["--image", "--layout", "hierarchical"])
    assert result.returncode == 0, result.stderr
    path = tmp_path / ds.PatientID / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    assert path.exists()
    assert_identical(received(tmp_path), originals, {ds.SOPInstanceUID})


def test_skip_existing_retrieves_only_missing(qr_dcmqrscp, move_port, tmp_path, originals):
    ds = first(originals)
    keys = (f"StudyInstanceUID={ds.StudyInstanceUID}",)
    extra = ["--study", "--studyroot", "--skip-existing"]
    expected = pick(originals, StudyInstanceUID=ds.StudyInstanceUID)
    assert retrieve(qr_dcmqrscp, "get", move_port, tmp_path, *keys, extra=extra).returncode == 0
    got = received(tmp_path)
    assert set(got) == expected
    victim = sorted(got)[0]
    got[victim].unlink()
    again = retrieve(qr_dcmqrscp, "get", move_port, tmp_path, *keys, extra=extra)
    assert again.returncode == 0, again.stderr
    assert "1 file(s) written" in again.stdout and f"{len(expected) - 1} already present" in again.stdout
    assert set(received(tmp_path)) == expected


def test_move_to_third_party_starts_no_scp(qr, third_party, originals, tmp_path):
    ds = first(originals)
    before = third_party.log_text().count("Received Store Request")
    host, port, aet = qr
    result = run_dicomscu("--move", "--studyroot", "--study", host, str(port), "--call", aet, "--aetitle", OUR_AE,
                          "--move-dest", "THIRD", "-k", f"20,d={ds.StudyInstanceUID}", "-o", str(tmp_path))
    assert result.returncode == 0, result.stderr
    expected = pick(originals, StudyInstanceUID=ds.StudyInstanceUID)
    time.sleep(0.5)  # storescp's log is written by another process
    assert third_party.log_text().count("Received Store Request") - before == len(expected)
    assert {p.name.split(".", 1)[1] for p in third_party.received()} >= expected
    assert not list(tmp_path.iterdir())


def test_unknown_move_destination_gives_advice(qr_dcmqrscp, tmp_path, originals):
    ds = first(originals)
    host, port, aet = qr_dcmqrscp
    result = run_dicomscu("--move", "--studyroot", "--study", host, str(port), "--call", aet,
                          "--aetitle", "NOBODY", "--port-scp", str(free_port()),
                          "-k", f"20,d={ds.StudyInstanceUID}", "-o", str(tmp_path))
    assert result.returncode == 1
    assert "0xA801" in result.stderr and "does not know the move destination AE NOBODY" in result.stderr
    assert "--get" in result.stderr


def test_unknown_third_party_destination_names_it_not_us(qr_dcmqrscp, tmp_path, originals):
    ds = first(originals)
    host, port, aet = qr_dcmqrscp
    result = run_dicomscu("--move", "--studyroot", "--study", host, str(port), "--call", aet,
                          "--move-dest", "ELSEWHERE", "-k", f"20,d={ds.StudyInstanceUID}", "-o", str(tmp_path),
                          "--format", "json")
    assert result.returncode == 1
    document = json.loads(result.stdout)  # a failure is one JSON document too
    assert document["status"]["hex"] == "0xA801" and document["exit_code"] == 1
    message = document["error"]["message"]
    assert "ELSEWHERE" in message and "--move-dest" in message and "--aetitle" not in message


def test_wildcards_and_missing_unique_key_refused_before_network():
    port = free_port()  # nothing listens: a network attempt would fail differently
    wild = run_dicomscu("--move", "--study", "127.0.0.1", str(port), "-k", "20,d=1.2.*", "--port-scp", "11999")
    assert wild.returncode == 2 and "no wildcards" in wild.stderr
    missing = run_dicomscu("--get", "--series", "--studyroot", "127.0.0.1", str(port), "-k", "20,d=1.2.3")
    assert missing.returncode == 2 and "needs a value for SeriesInstanceUID" in missing.stderr


def test_port_scp_in_use_is_clear(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run_dicomscu("--move", "--study", "--studyroot", "127.0.0.1", str(free_port()),
                              "-k", "20,d=1.2.3", "--port-scp", str(port), "-o", str(tmp_path))
    assert result.returncode == 2 and "already in use" in result.stderr
    assert time.monotonic() - started < 10


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind privileged ports")
def test_privileged_port_scp_is_clear(tmp_path):
    result = run_dicomscu("--move", "--study", "--studyroot", "127.0.0.1", str(free_port()),
                          "-k", "20,d=1.2.3", "--port-scp", "104", "-o", str(tmp_path))
    assert result.returncode == 2 and "root" in result.stderr


def test_unwritable_output_is_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_dicomscu("--get", "--study", "--studyroot", "127.0.0.1", str(free_port()),
                          "-k", "20,d=1.2.3", "-o", str(blocker / "sub"))
    assert result.returncode == 2 and "-o" in result.stderr


def test_server_that_never_connects_back_times_out_with_advice(tmp_path):
    """A MOVE SCP that acknowledges nothing and sends nothing: a timeout naming the mapping."""
    def on_move(event):
        yield ("127.0.0.1", 9)  # destination it would use (never reached)
        time.sleep(30)
        yield 0

    ae = AE(ae_title="STUCK")
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelMove)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_MOVE, on_move)])
    try:
        started = time.monotonic()
        result = run_dicomscu("--move", "--patient", "127.0.0.1", str(port), "-k", "10,20=X",
                              "--port-scp", str(free_port()), "-o", str(tmp_path), "--dimse-timeout", "2")
        elapsed = time.monotonic() - started
    finally:
        server.shutdown()
    assert result.returncode == 5, result.stderr
    assert "cannot connect back" in result.stderr and "GDCMSCU" in result.stderr
    assert elapsed < 15


def _get_scp(datasets, abort_after: int | None = None):
    """A pynetdicom C-GET SCP sending `datasets` (and aborting after `abort_after` of them)."""
    def on_get(event):
        yield len(datasets)
        for index, ds in enumerate(datasets):
            if abort_after is not None and index == abort_after:
                event.assoc.abort()
                return
            yield 0xFF00, ds

    ae = AE(ae_title="GETSCP")
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelGet)
    ae.add_supported_context(SecondaryCaptureImageStorage, scu_role=True, scp_role=True)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_GET, on_get)])
    return server, port


def test_hostile_patient_id_stays_inside_output(tmp_path, originals):
    ds = pydicom.dcmread(next(p for p in originals.values() if "small" in p.name))
    ds.PatientID = "../../../../tmp/evil"
    server, port = _get_scp([ds])
    out = tmp_path / "out"
    try:
        result = run_dicomscu("--get", "--patient", "127.0.0.1", str(port), "-k", "10,20=X",
                              "-o", str(out), "--layout", "hierarchical")
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    files = list(out.rglob("*.dcm"))
    assert len(files) == 1
    assert files[0].resolve().is_relative_to(out.resolve())
    assert not Path("/tmp/evil").exists()


def test_abort_mid_get_leaves_only_whole_files(tmp_path, originals):
    small = [pydicom.dcmread(p) for p in originals.values() if "small" in p.name][:5]
    server, port = _get_scp(small, abort_after=2)
    try:
        result = run_dicomscu("--get", "--patient", "127.0.0.1", str(port), "-k", "10,20=X", "-o", str(tmp_path),
                              "--timeout", "5")
    finally:
        server.shutdown()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.part"))
    for path in tmp_path.rglob("*.dcm"):
        assert pydicom.dcmread(path).PixelData  # whole


def test_safe_component_and_writer_containment(tmp_path):
    assert safe_component("1.2.3", "x") == "1.2.3"
    for hostile in ["../../etc/x", "..", "/abs/path", "a/b", "x" * 300, "", "\0"]:
        name = safe_component(hostile, "fallback")
        assert "/" not in name and not name.startswith(".") and len(name) <= 64
    writer = InstanceWriter(str(tmp_path.resolve()), "hierarchical")
    path = writer.path_for("../../etc/passwd", "../..", "..", "/root")
    assert Path(path).resolve().is_relative_to(tmp_path.resolve())
    assert safe_component("a/b", "f") != safe_component("a_b", "f")


def test_a_runs_leftover_temporary_files_are_told_from_anothers(tmp_path, monkeypatch):
    """A cluster run marks its temporary names: its client removes what a killed worker of the run left, and
    never a file another run (another dicomscu writing into the same folder) is writing now."""
    killed = InstanceWriter(str(tmp_path), "hierarchical", tag="run1")

    def killed_before_the_rename(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed_before_the_rename)
    monkeypatch.setattr(os, "unlink", lambda _: None)  # as after a kill -9: nothing cleans up
    with pytest.raises(KeyboardInterrupt):
        killed.write(b"", "1.2.840.10008.5.1.4.1.1.7", "1.2.3", "1.2.840.10008.1.2",
                     {0x00100020: "P", 0x0020000D: "1.2", 0x0020000E: "1.2.1"})
    monkeypatch.undo()
    left = list(tmp_path.rglob("*.part"))
    assert len(left) == 1 and left[0].name.startswith(".dicomscu-run1-")
    other = left[0].parent / ".dicomscu-run2-busy.part"
    plain = tmp_path / ".dicomscu-x.part"
    other.write_bytes(b"being written")
    plain.write_bytes(b"being written")
    from dicomscu.files.instances import remove_partial_files
    assert remove_partial_files(str(tmp_path), "run1") == [str(left[0])]
    assert sorted(tmp_path.rglob("*.part")) == sorted([other, plain])


def test_progress_callback_counts(qr_orthanc, tmp_path, originals):
    ds = first(originals)
    host, port, aet = qr_orthanc
    seen = []
    query = dicomscu.build_query("studyroot", "study", [f"StudyInstanceUID={ds.StudyInstanceUID}"])
    from dicomscu.operations.retrieve import RetrieveOptions, get

    lock = threading.Lock()

    def progress(report):
        with lock:
            seen.append((report.completed, report.written))

    report = get(Peer(host, port, called_ae=aet, calling_ae=OUR_AE), query,
                 RetrieveOptions(output=str(tmp_path.resolve())), on_progress=progress)
    expected = len(pick(originals, StudyInstanceUID=ds.StudyInstanceUID))
    assert report.written == expected and report.completed == expected and report.ok
    assert seen and seen[-1][1] == expected


def test_a_routine_c_move_ends_without_a_stopping_warning(tmp_path, dataset_dir):
    """The peer releases its storage association right after its last C-STORE: our C-MOVE SCP waits for
    that quietly (it once said "stopping: waiting up to 5 s" after one C-MOVE in three)."""
    from conftest import run_inprocess
    from peers import free_port

    from dicomscu.server.pacs import Pacs, ServerConfig

    move_port = free_port()
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               destinations={"ME": ("127.0.0.1", move_port)}))
    server.start()
    try:
        files = sorted((dataset_dir / "small").iterdir())[:3]
        assert run_inprocess("--store", "127.0.0.1", str(server.port), *map(str, files)).returncode == 0
        patient = pydicom.dcmread(files[0], stop_before_pixels=True).PatientID
        for attempt in range(12):
            result = run_dicomscu("--move", "--patient", "--patientroot", "-k", f"10,20={patient}", "127.0.0.1",
                                  str(server.port), "--aetitle", "ME", "--port-scp", str(move_port),
                                  "-o", str(tmp_path / f"out{attempt}"))
            assert result.returncode == 0, result.stderr
            assert "stopping" not in result.stderr, (attempt, result.stderr)
    finally:
        server.stop()


def test_c_get_from_a_server_that_does_not_say_its_syntaxes_names_what_could_not_come(tmp_path):
    """A server (pynetdicom's, as its qrscp) holding a JPEG Baseline instance answers the survey with the SOP
    class but no AvailableTransferSyntaxUID: as gdcmscu, Implicit VR LE only is proposed, the instance cannot
    come, and the summary says why and what to do; with --accept-all-syntaxes it comes, as stored."""
    from pydicom.data import get_testdata_file
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

    jpeg = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))

    def on_find(event):
        answer = Dataset()
        answer.QueryRetrieveLevel = "IMAGE"
        answer.SOPClassUID = jpeg.SOPClassUID
        answer.SOPInstanceUID = jpeg.SOPInstanceUID
        yield 0xFF00, answer

    def on_get(event):
        yield 1
        yield 0xFF00, jpeg

    ae = AE(ae_title="NOSYNTAX")
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelGet)
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(SecondaryCaptureImageStorage, ALL_TRANSFER_SYNTAXES, scu_role=True, scp_role=True)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_GET, on_get), (evt.EVT_C_FIND, on_find)])
    try:
        base = ["--get", "--patient", "127.0.0.1", str(port), "-k", "10,20=X"]
        plain = run_dicomscu(*base, "-o", str(tmp_path / "plain"))
        every = run_dicomscu(*base, "-o", str(tmp_path / "every"), "--accept-all-syntaxes")
    finally:
        server.shutdown()
    assert plain.returncode != 0 and not list((tmp_path / "plain").rglob("*.dcm"))
    said = plain.stdout + plain.stderr
    assert "did not say which transfer syntaxes" in said and "--accept-all-syntaxes" in said, said
    assert every.returncode == 0, every.stdout + every.stderr
    (got,) = list((tmp_path / "every").rglob("*.dcm"))
    assert pydicom.dcmread(got).file_meta.TransferSyntaxUID == jpeg.file_meta.TransferSyntaxUID


def test_c_get_spreads_over_associations_when_127_contexts_do_not_fit(tmp_path):
    """A study of 130 SOP classes (65 kept in Explicit VR Big Endian, 65 in Little Endian): more storage
    contexts than one association holds.  C-GET finds the instances, groups them so that each group fits,
    and retrieves each group over an association of its own: every instance comes, and with
    --accept-all-syntaxes each in the syntax it is kept in."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import generate_uid

    from peers import free_port

    from dicomscu.server.pacs import Pacs, ServerConfig
    from dicomscu.storage_classes import STORAGE_UIDS

    study, series = generate_uid(), generate_uid()
    sent = tmp_path / "sent"
    sent.mkdir()
    kept_in = {}
    for number, sop_class in enumerate(list(STORAGE_UIDS)[:130]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        big = number % 2 == 0
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2" if big else "1.2.840.10008.1.2.1"
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID, ds.Modality = study, series, "MANY", "OT"
        ds.InstanceNumber = number + 1
        ds.save_as(sent / f"{number}.dcm", enforce_file_format=True, little_endian=not big, implicit_vr=False)
        kept_in[ds.SOPInstanceUID] = ds.file_meta.TransferSyntaxUID
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage")))
    server.start()
    try:
        base = ["127.0.0.1", str(server.port)]
        stored = run_dicomscu("--store", *base, str(sent), "--accept-all-syntaxes")
        assert stored.returncode == 0, stored.stdout + stored.stderr
        got = {}
        for mode, extra in (("as-stored", ["--accept-all-syntaxes"]), ("implicit", [])):
            result = run_dicomscu("--get", "--study", "--studyroot", *base, "-k", f"20,d={study}",
                                  "-o", str(tmp_path / mode), *extra)
            assert result.returncode == 0, result.stdout + result.stderr
            got[mode] = {ds.SOPInstanceUID: ds.file_meta.TransferSyntaxUID
                         for ds in map(pydicom.dcmread, (tmp_path / mode).rglob("*.dcm"))}
    finally:
        server.stop()
    assert got["as-stored"] == kept_in
    assert set(got["implicit"]) == set(kept_in) and set(got["implicit"].values()) == {"1.2.840.10008.1.2"}
    sent_by_uid = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, sent.iterdir())}
    for mode in ("as-stored", "implicit"):  # each instance arrives with the data set sent, element by element
        for path in (tmp_path / mode).rglob("*.dcm"):
            received = pydicom.dcmread(path)
            assert list(received) == list(sent_by_uid[received.SOPInstanceUID]), (mode, path.name)
