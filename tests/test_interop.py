"""Real-world files and peers: nothing refused, lost or changed that DCMTK or Orthanc would take."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

import dicomscu
from dicomscu import Peer
from dicomscu.files.journal import Journal
from dicomscu.files.probe import probe
from dicomscu.sample import SampleSpec, write_sample

from conftest import run_dicomscu
from peers import storage_scp

SC = "1.2.840.10008.5.1.4.1.1.7"
MR = "1.2.840.10008.5.1.4.1.1.4"


@pytest.fixture
def small_files(tmp_path) -> list[Path]:
    """Six small secondary-capture images in one series (flat: sorted names keep the order)."""
    spec = SampleSpec(patients=1, series=1, count=6, modalities=("OT",), matrix=16, layout="flat")
    return sorted(write_sample(tmp_path / "files", spec).files)


def uid_of(path: Path) -> str:
    return pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID


def test_meta_disagreeing_with_the_data_set_sends_the_data_sets_uid(storescp, small_files, tmp_path):
    ds = pydicom.dcmread(small_files[0])
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    odd = tmp_path / "meta-disagrees.dcm"
    ds.save_as(odd, enforce_file_format=False)  # True would make the meta agree again
    result = run_dicomscu("--store", "127.0.0.1", str(storescp.port), str(odd), str(small_files[1]),
                          "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    first = document["files"][0]
    assert first["outcome"] == "ok" and first["sop_instance_uid"] == ds.SOPInstanceUID
    assert "1.2.3.4.5.6.7.8.9" in first["message"]
    received = {pydicom.dcmread(p).SOPInstanceUID for p in storescp.received()}
    assert received == {ds.SOPInstanceUID, uid_of(small_files[1])}
    text = run_dicomscu("--store", "127.0.0.1", str(storescp.port), str(odd), str(small_files[1]))
    warnings = [line for line in text.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and str(odd) in warnings[0] and "differs from the data set's" in warnings[0]


def _deflated_file(template: Path, folder: Path, odd: bool) -> Path:
    """A Deflated Explicit VR LE file whose deflate stream has an odd (or even) length."""
    ds = pydicom.dcmread(template)
    for extra in range(200):
        ds.StudyDescription = "deflate " + "x" * extra
        body = DicomBytesIO()
        body.is_little_endian, body.is_implicit_VR = True, False
        pydicom.filewriter.write_dataset(body, ds)
        packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        stream = packer.compress(body.getvalue()) + packer.flush()
        if len(stream) % 2 == int(odd):
            break
    meta = DicomBytesIO()
    meta.is_little_endian, meta.is_implicit_VR = True, False
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    pydicom.filewriter.write_file_meta_info(meta, ds.file_meta, enforce_standard=True)
    path = folder / f"deflated-{'odd' if odd else 'even'}.dcm"
    path.write_bytes(bytes(128) + b"DICM" + meta.getvalue() + stream)
    return path


def test_odd_length_deflate_stream_is_padded_and_stored_whole(tmp_path, small_files):
    from peers import StoreSCP

    peer = StoreSCP(tmp_path / "received", "+xa")
    try:
        odd = _deflated_file(small_files[0], tmp_path, odd=True)
        assert (len(odd.read_bytes()) - probe(odd.read_bytes()).dataset_offset) % 2 == 1
        result = run_dicomscu("--store", "127.0.0.1", str(peer.port), str(odd), str(small_files[1]))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "2 of 2 file(s) stored" in result.stdout
        got = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in peer.received()}
        original = pydicom.dcmread(odd)
        assert got[original.SOPInstanceUID].PixelData == original.PixelData
        assert got[original.SOPInstanceUID].StudyDescription == original.StudyDescription
    finally:
        peer.close()


@pytest.fixture
def aborting_scp():
    """A pynetdicom Storage SCP that aborts the association when it receives a poisoned instance."""
    state = {"poison": set(), "stored": [], "associations": set()}

    def on_store(event):
        state["associations"].add(id(event.assoc))
        uid = event.request.AffectedSOPInstanceUID
        if uid in state["poison"]:
            event.assoc.abort()
            return 0xC000
        state["stored"].append(uid)
        return 0x0000

    with storage_scp("ABORTER", [SC], on_store) as port:
        yield port, state


def test_abort_mid_batch_fails_the_file_in_flight_and_the_rest_goes_on(aborting_scp, small_files, tmp_path):
    port, state = aborting_scp
    poisoned = uid_of(small_files[2])
    state["poison"].add(poisoned)
    results = []
    journal = Journal(str(tmp_path / "journal.sqlite"))
    report = dicomscu.store(Peer("127.0.0.1", port), [str(p) for p in small_files], on_result=results.append,
                            journal=journal)
    outcome = {Path(r.path).name: r.outcome for r in results}
    assert outcome[small_files[2].name] == "failed" and list(outcome.values()).count("ok") == 5
    failed = next(r for r in results if r.outcome == "failed")
    assert "in flight" in failed.message
    assert set(state["stored"]) == {uid_of(p) for p in small_files} - {poisoned}
    assert len(state["associations"]) == 2  # a new association after the abort
    given = len(small_files)
    assert given == report.stored + report.counts["failed"] + report.counts["skipped"] + report.not_sent
    assert report.error is not None and small_files[2].name in str(report.error)

    # a journal rerun retries the failed file once and does not stop at it
    state["poison"].clear()
    again = []
    rerun = dicomscu.store(Peer("127.0.0.1", port), [str(p) for p in small_files], on_result=again.append,
                           journal=Journal(str(tmp_path / "journal.sqlite")))
    assert rerun.ok and rerun.stored == 1 and rerun.counts["already"] == 5
    assert state["stored"].count(poisoned) == 1


def test_a_peer_that_aborts_everything_is_given_up_with_exact_counts(aborting_scp, small_files):
    port, state = aborting_scp
    state["poison"].update(uid_of(p) for p in small_files)
    result = run_dicomscu("--store", "127.0.0.1", str(port), *map(str, small_files), timeout=60)
    assert result.returncode == 7, result.stdout + result.stderr
    assert "0 of 6 file(s) stored" in result.stdout
    assert "3 failed" in result.stdout and "3 not sent" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.fixture
def uncompressed_scp():
    """A pynetdicom SCP accepting MR and SC in Explicit and Implicit VR LE; records the syntax used."""
    received = {}

    def on_store(event):
        received[event.dataset.SOPInstanceUID] = (event.context.transfer_syntax, event.dataset)
        return 0x0000

    with storage_scp("UNCOMPRESSED", [MR, SC], on_store,
                     syntaxes=(ExplicitVRLittleEndian, ImplicitVRLittleEndian)) as port:
        yield port, received


def test_decompressed_data_sets_go_as_explicit_vr(uncompressed_scp):
    from pydicom.data import get_testdata_file

    port, received = uncompressed_scp
    rle = get_testdata_file("MR_small_RLE.dcm")
    report = dicomscu.store(Peer("127.0.0.1", port), [rle])
    assert report.stored == 1
    original = pydicom.dcmread(rle)
    syntax, ds = received[original.SOPInstanceUID]
    assert syntax == ExplicitVRLittleEndian
    original.decompress(generate_instance_uid=False)
    assert ds.PixelData == original.PixelData


def test_a_failing_decoder_is_named_as_such(uncompressed_scp, tmp_path):
    from pydicom.data import get_testdata_file

    port, _ = uncompressed_scp
    ds = pydicom.dcmread(get_testdata_file("MR_small_RLE.dcm"))
    ds.PixelData = pydicom.encaps.encapsulate([b"\x05" + bytes(63) + b"not RLE"])  # header claims 5 segments
    broken = tmp_path / "broken-rle.dcm"
    ds.save_as(broken, enforce_file_format=True)
    results = []
    dicomscu.store(Peer("127.0.0.1", port), [str(broken)], on_result=results.append)
    assert results[0].outcome == "failed"
    assert "decoder failed" in results[0].message and "pip install" not in results[0].message


@pytest.mark.parametrize("operation", [[], ["--store"], ["--get", "--study", "-k", "StudyInstanceUID=1.2.3"],
                                       ["--move", "--study", "-k", "StudyInstanceUID=1.2.3", "--move-dest", "OTHER"]])
def test_json_output_is_one_document_even_when_nothing_listens(operation, small_files):
    from peers import free_port

    files = [str(small_files[0])] if operation == ["--store"] else []
    result = run_dicomscu(*operation, "127.0.0.1", str(free_port()), *files, "--format", "json")
    assert result.returncode == 3, result.stderr
    document = json.loads(result.stdout)
    assert document["error"]["kind"] == "ConnectionFailed" and document["exit_code"] == 3
    assert "refused" in document["error"]["message"]
    assert document["operation"].startswith("C-")


def test_json_output_of_a_rejected_echo(tmp_path):
    from peers import free_port

    port = free_port()
    from dicomscu.server.pacs import Pacs, ServerConfig

    pacs = Pacs(ServerConfig(port=port, host="127.0.0.1", storage=str(tmp_path / "pacs"),
                             require_calling=["SOMEONE"]))
    pacs.start()
    try:
        result = run_dicomscu("127.0.0.1", str(port), "--format", "json")
    finally:
        pacs.stop()
    assert result.returncode == 6
    document = json.loads(result.stdout)
    assert document["operation"] == "C-ECHO" and document["error"]["kind"] == "AssociationRejected"


@pytest.fixture
def serve_with_compressed(tmp_path):
    """dicomscu serve holding the same study twice over: nothing else, one JPEG 2000 and one RLE series."""
    pytest.importorskip("pylibjpeg")
    from peers import free_port
    from dicomscu.server.pacs import Pacs, ServerConfig

    sample = tmp_path / "sample"
    write_sample(sample, SampleSpec(patients=1, series=1, images=3, modalities=("CT",), matrix=64),
                 compress=("jpeg2000",))
    write_sample(sample / "rle", SampleSpec(patients=1, series=1, images=2, modalities=("MR",), matrix=64,
                                            seed=7), compress=("rle",))
    files = [*sorted((sample / "jpeg2000").rglob("*.dcm")), *sorted((sample / "rle" / "rle").rglob("*.dcm"))]
    move_port = free_port()
    pacs = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "pacs"),
                             destinations={"MOVESCU": ("127.0.0.1", move_port)}))
    pacs.start()
    try:
        assert dicomscu.store(Peer("127.0.0.1", pacs.port, called_ae="DICOMSCU"), list(map(str, files))).ok
        yield pacs.port, move_port, files
    finally:
        pacs.stop()


def _received_bytes(folder: Path) -> dict[str, bytes]:
    found = {}
    for path in folder.rglob("*.dcm"):
        info = probe(path.read_bytes())
        found[info.sop_instance] = (info.transfer_syntax, path.read_bytes()[info.dataset_offset:])
    return found


@pytest.mark.parametrize("operation", ["--get", "--move"])
def test_accept_all_syntaxes_keeps_compressed_instances_as_they_are(serve_with_compressed, tmp_path, operation):
    port, move_port, files = serve_with_compressed
    extra = ["--aetitle", "MOVESCU", "--port-scp", str(move_port)] if operation == "--move" else []
    patient = pydicom.dcmread(files[0]).PatientID
    out = tmp_path / "out"
    result = run_dicomscu(operation, "--patient", "--patientroot", "127.0.0.1", str(port), "--call", "DICOMSCU",
                          "-k", f"PatientID={patient}", "--accept-all-syntaxes", "-o", str(out), *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    got = _received_bytes(out)
    expected = {}
    for path in files:
        info = probe(path.read_bytes())
        if pydicom.dcmread(path, stop_before_pixels=True).PatientID == patient:
            expected[info.sop_instance] = (info.transfer_syntax, path.read_bytes()[info.dataset_offset:])
    assert got == expected and len(got) == 5


def test_move_without_accept_all_explains_the_refused_syntax(serve_with_compressed, tmp_path):
    """Without --accept-all-syntaxes we take Implicit VR Little Endian only: serve decompresses what a decoder
    reads, so that study comes whole; an instance in a syntax no decoder here reads cannot come, and the
    failure names the option that takes it as stored."""
    port, move_port, files = serve_with_compressed
    study = pydicom.dcmread(files[0]).StudyInstanceUID

    def move(uid: str, out: str):
        return run_dicomscu("--move", "--study", "--studyroot", "127.0.0.1", str(port), "--call", "DICOMSCU",
                            "-k", f"StudyInstanceUID={uid}", "--aetitle", "MOVESCU", "--port-scp", str(move_port),
                            "-o", str(tmp_path / out))

    result = move(study, "decompressed")
    assert result.returncode == 0, result.stdout + result.stderr
    arrived = [pydicom.dcmread(path) for path in (tmp_path / "decompressed").rglob("*.dcm")]
    assert {ds.file_meta.TransferSyntaxUID for ds in arrived} == {"1.2.840.10008.1.2"} and len(arrived) == 3

    mpeg2 = pydicom.dcmread(files[0])  # no decoder exists for MPEG2: as if one
    mpeg2.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    mpeg2.StudyInstanceUID, mpeg2.SOPInstanceUID = "1.2.826.0.1.3680043.10.1137.96", "1.2.826.0.1.3680043.10.1137.96.1"
    mpeg2.file_meta.MediaStorageSOPInstanceUID = mpeg2.SOPInstanceUID
    mpeg2.save_as(tmp_path / "mpeg2.dcm")
    assert dicomscu.store(Peer("127.0.0.1", port, called_ae="DICOMSCU"), [str(tmp_path / "mpeg2.dcm")]).ok
    result = move(mpeg2.StudyInstanceUID, "refused")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "--accept-all-syntaxes" in result.stdout + result.stderr


def test_retrieved_files_honour_the_umask(serve_with_compressed, tmp_path):
    import os
    import stat
    import subprocess
    import sys

    port, _, files = serve_with_compressed
    patient = pydicom.dcmread(files[0]).PatientID
    out = tmp_path / "umask"
    command = [sys.executable, "-m", "dicomscu", "--get", "--patient", "--patientroot", "127.0.0.1", str(port),
               "--call", "DICOMSCU", "-k", f"PatientID={patient}", "--accept-all-syntaxes", "-o", str(out)]
    result = subprocess.run(["sh", "-c", 'umask 022 && exec "$@"', "sh", *command], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    modes = {stat.S_IMODE(os.stat(p).st_mode) for p in out.glob("*.dcm")}
    assert modes == {0o644}


def test_answers_without_a_character_set_read_alike_in_every_format():
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

    from peers import find_scp

    def on_find(event):
        answer = Dataset()
        answer.QueryRetrieveLevel = "PATIENT"
        answer.add(DataElement(0x00100010, "PN", "Müller^Jérôme".encode("latin-1")))  # legacy bytes, no (0008,0005)
        answer.PatientID = "P1"
        yield 0xFF00, answer

    outputs = {}
    with find_scp("LEGACY", on_find) as port:
        for name in ("json", "csv", "dump"):
            result = run_dicomscu("--find", "--patient", "--patientroot", "127.0.0.1", str(port), "-k", "PatientName",
                                  "--format", name, "--charset", "ISO_IR 192")
            assert result.returncode == 0, result.stderr
            outputs[name] = result.stdout
    assert json.loads(outputs["json"])[0]["00100010"]["Value"][0]["Alphabetic"] == "Müller^Jérôme"
    for name, text in outputs.items():
        assert "\ufffd" not in text, (name, text)
    assert "Müller^Jérôme" in outputs["csv"]
    assert "[M.ller^J.r.me " in outputs["dump"]  # gdcmdump's layout: a byte outside ASCII is a dot


def test_get_contexts_cover_every_class_and_every_syntax_seen_within_127():
    from dicomscu.operations.retrieve import RetrieveOptions, _storage_contexts

    options = RetrieveOptions(accept_all_syntaxes=True)
    j2k, explicit, jpeg = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"
    one = _storage_contexts(["1.2.3"], {"1.2.3": {j2k}}, options)
    assert one[0].transfer_syntaxes == (j2k,) and len(one) <= 127
    for classes, seen in ((40, set()), (60, {explicit}), (100, {explicit, jpeg})):
        learned = {f"1.2.{n}": set(seen) for n in range(classes)}
        contexts = _storage_contexts(list(learned), learned, options)
        assert len(contexts) <= 127 and {c.abstract_syntax for c in contexts} == set(learned)
        for uid, syntaxes in learned.items():
            offered = {ts for c in contexts if c.abstract_syntax == uid for ts in c.transfer_syntaxes}
            assert syntaxes <= offered
    assert [c.transfer_syntaxes for c in _storage_contexts(["1.2.3"], {}, RetrieveOptions())] == [("1.2.840.10008.1.2",)]


def test_a_file_a_peer_aborts_on_for_odd_length_elements_is_named_with_the_reason(storescp):
    """deid-data's CT with an odd-length element (0011,0011): DCMTK aborts on it; the file's line says which
    element and why (PS3.5 7.1.1), so that the fix is looked for in the file, not the network."""
    import deid_data

    path = Path(deid_data.__file__).parent / "data" / "humans" / "ctbrain1.dcm"
    results = []
    dicomscu.store(Peer("127.0.0.1", storescp.port), [str(path)], on_result=results.append)
    (result,) = results
    assert result.outcome == "failed" and "(0011,0011)" in result.message and "PS3.5 7.1.1" in result.message
