"""serve's matching of the keys its index does not hold (PS3.4 C.2.2.2): sequences and optional attributes,
read from a stored instance, matched and returned; checked over DIMSE (dicomscu's C-FIND) and QIDO-RS."""

from __future__ import annotations

import json
import urllib.request

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

import dicomscu
from peers import free_port

from dicomscu.server.pacs import Pacs, ServerConfig


def _instance(path, patient: str, code: str | None, others: list[str]) -> str:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = patient, f"{patient}^X", "OT"
    if others:
        ds.OtherPatientNames = others
    if code is not None:
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code, "LOCAL", f"Procedure {code}"
        ds.ProcedureCodeSequence = [item]
    ds.save_as(path, enforce_file_format=True)
    return ds.StudyInstanceUID


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("matching")
    studies = {}
    for patient, code, others in [("P1", "CT123", ["Smith^Anna", "Jones^A"]), ("P2", "MR456", []),
                                  ("P3", None, ["Smythe^Bob"])]:
        studies[patient] = _instance(folder / f"{patient}.dcm", patient, code, others)
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(folder / "storage"), http_port=0))
    server.start()
    peer = dicomscu.Peer("127.0.0.1", server.port)
    report = dicomscu.store(peer, [str(folder / f"{p}.dcm") for p in studies])
    assert report.stored == 3
    yield peer, server, studies
    server.stop()


def _find(peer, *keys) -> list[Dataset]:
    answers: list[Dataset] = []
    given = [*keys] if any(key.startswith("PatientID") for key in keys) else ["PatientID", *keys]
    dicomscu.find(peer, dicomscu.build_query("studyroot", "study", given), on_answer=answers.append)
    return answers


@pytest.mark.parametrize("keys, patients", [
    (["ProcedureCodeSequence[0].CodeValue=CT123"], {"P1"}),
    (["ProcedureCodeSequence[0].CodeValue=NOMATCH"], set()),  # once: every study
    (["ProcedureCodeSequence[0].CodeValue=*456"], {"P2"}),
    (["ProcedureCodeSequence[0].CodeValue=CT123", "ProcedureCodeSequence[0].CodingSchemeDesignator=OTHER"], set()),
    (["ProcedureCodeSequence[0].CodeValue"], {"P1", "P2", "P3"}),  # an empty key item: universal
    (["ProcedureCodeSequence"], {"P1", "P2", "P3"}),
    (["OtherPatientNames=Sm*"], {"P1", "P3"}),  # a multi-valued attribute: one of its values matches
    (["OtherPatientNames=Jones^A"], {"P1"}),
    (["OtherPatientNames=Nobody"], set()),
    (["OtherPatientNames"], {"P1", "P2", "P3"}),
])
def test_keys_the_index_does_not_hold_are_matched(served, keys, patients):
    peer, _, _ = served
    assert {str(answer.PatientID) for answer in _find(peer, *keys)} == patients


def test_a_sequence_key_returns_the_stored_items_with_the_attributes_asked(served):
    peer, _, _ = served
    (answer,) = _find(peer, "PatientID=P1", "ProcedureCodeSequence[0].CodeValue", "OtherPatientNames")
    (item,) = answer.ProcedureCodeSequence
    assert item.CodeValue == "CT123" and "CodeMeaning" not in item  # only what the key item names
    assert list(answer.OtherPatientNames) == ["Smith^Anna", "Jones^A"]
    (bare,) = _find(peer, "PatientID=P2", "ProcedureCodeSequence")
    assert bare.ProcedureCodeSequence[0].CodeMeaning == "Procedure MR456"  # no key item: whole items


def test_qido_matches_the_same_keys(served):
    _, server, studies = served
    base = f"http://127.0.0.1:{server.http_port}/dicom-web/studies"
    with urllib.request.urlopen(base + "?OtherPatientNames=Sm*&includefield=OtherPatientNames") as response:
        found = {answer["00100020"]["Value"][0] for answer in json.loads(response.read())}
    assert found == {"P1", "P3"}
