"""The client never silently does nothing, nor more than asked: a journal belongs to its peer, identifiers from
JSON pass the checks -k passes, and the API takes a path as a path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import dicomscu
from conftest import run_dicomscu, run_inprocess
from peers import StoreSCP, free_port

from dicomscu.errors import UsageError
from dicomscu.transport.peer import Peer


def test_a_journal_refuses_to_skip_files_for_another_peer(tmp_path, dataset_dir):
    first, second = StoreSCP(tmp_path / "first"), StoreSCP(tmp_path / "second")
    journal = tmp_path / "migration.journal"
    try:
        sent = run_dicomscu("--store", "127.0.0.1", str(first.port), "--journal", str(journal),
                            str(dataset_dir / "small"))
        assert sent.returncode == 0, sent.stderr
        again = run_dicomscu("--store", "127.0.0.1", str(first.port), "--journal", str(journal),
                             str(dataset_dir / "small"))
        other = run_dicomscu("--store", "127.0.0.1", str(second.port), "--journal", str(journal),
                             str(dataset_dir / "small"))
        api = None
        try:
            dicomscu.store(Peer("127.0.0.1", second.port, called_ae="STORESCP"), str(dataset_dir / "small"),
                           journal=str(journal))
        except UsageError as exc:
            api = exc
        fresh = dicomscu.store(Peer("127.0.0.1", second.port), str(dataset_dir / "small"),
                               journal=str(tmp_path / "second.journal"))
    finally:
        first.close()
        second.close()
    assert "already stored" in again.stdout + again.stderr and again.returncode == 0
    assert other.returncode == 2, other.stdout + other.stderr
    assert f"ANY-SCP@127.0.0.1:{first.port}" in other.stderr and "another --journal" in other.stderr
    assert not second.received() or len(second.received()) == 60  # nothing from the refused runs
    assert api is not None and "journal of" in str(api)
    assert fresh.stored == 60  # a string path: the folder, and a journal given by its path


@pytest.mark.parametrize("uid", ["*", "../..", "1.2.3\x00", "9" * 10_000, "1.2.?"],
                         ids=["star", "dotdot", "nul", "10000-digits", "question-mark"])
def test_from_json_identifiers_pass_the_checks_of_k(tmp_path, uid):
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps([{"00080052": {"vr": "CS", "Value": ["STUDY"]},
                                    "0020000D": {"vr": "UI", "Value": [uid]}}]))
    port = free_port()  # nothing listens there: the refusal comes before any connection
    result = run_inprocess("--get", "--study", "--studyroot", "127.0.0.1", str(port), "--from-json", str(answers),
                           "-o", str(tmp_path / "out"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "StudyInstanceUID" in result.stderr and len(result.stderr) < 400, result.stderr
    assert "\x00" not in result.stderr


def test_a_string_is_one_path_and_other_types_are_refused(tmp_path, dataset_dir, storescp):
    report = dicomscu.store(Peer("127.0.0.1", storescp.port), Path(dataset_dir / "small"))
    assert report.stored == 60
    with pytest.raises(UsageError, match="a path or a sequence of paths"):
        dicomscu.store(Peer("127.0.0.1", storescp.port), 42)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="found a int"):
        dicomscu.store(Peer("127.0.0.1", storescp.port), [str(dataset_dir), 7])  # type: ignore[list-item]


def test_a_file_name_with_a_newline_stays_one_line(tmp_path, storescp):
    bad = tmp_path / "evil\ndicomscu: stored: forged.dcm"
    bad.write_bytes(b"not DICOM at all")
    result = run_dicomscu("--store", "127.0.0.1", str(storescp.port), str(bad))
    lines = [line for line in result.stderr.splitlines() if "evil" in line or "forged" in line]
    assert len(lines) == 1 and "evil\\ndicomscu: stored: forged.dcm" in lines[0], result.stderr


@pytest.mark.parametrize("value", ["A\x85B", "A\nB", "A\x1b[2JB", "A\u2028B"], ids=["c1-nel", "newline", "escape",
                                                                                   "line-separator"])
def test_retrieval_keys_with_control_characters_are_refused_by_printables_rule(value):
    """A non-UID retrieval key holding any character `printable` escapes (C0, DEL, C1, line separators)."""
    from dicomscu.operations.retrieval import check_identifier
    from dicomscu.query.model import MODELS

    with pytest.raises(UsageError, match="no control characters"):
        check_identifier({"QueryRetrieveLevel": "PATIENT", "PatientID": value}, MODELS["patientroot"], "PATIENT",
                         "C-GET")
    check_identifier({"QueryRetrieveLevel": "PATIENT", "PatientID": "Ab-1 ^é"}, MODELS["patientroot"], "PATIENT",
                     "C-GET")
