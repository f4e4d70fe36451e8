"""Storage commitment (PS3.4 J, push model): dicomscu's SCU and serve's SCP, with each other and with Orthanc.

Both ways a result can travel are exercised: on the requestor's association (serve answering dicomscu) and on
a new association back to the requestor (Orthanc answering dicomscu at --port-scp; serve answering Orthanc,
which closes its association after the request).  What a source may be deleted on is only "committed": an
instance deleted or cut on the archive's side is reported failed with its reason, never committed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

import dicomscu
from conftest import run_dicomscu, run_inprocess
from dicomscu.operations.commit import references_in
from peers import Orthanc, free_port

PUSH, PUSH_INSTANCE = "1.2.840.10008.1.20.1", "1.2.840.10008.1.20.1.1"
#: What a pynetdicom storage commitment SCP accepts for the push model.
PUSH_CONTEXTS = [(PUSH, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])]


@contextmanager
def answering_peer(on_action):
    """A pynetdicom storage commitment SCP whose N-ACTIONs go to `on_action(event)`; yields its port."""
    from pynetdicom import evt

    from peers import pynetdicom_scp

    with pynetdicom_scp("ANY-SCP", PUSH_CONTEXTS, evt.EVT_N_ACTION, on_action) as port:
        yield port


@contextmanager
def reporting_peer(port_scp: int, ae_title: str, delay: float, send):
    """An SCP that answers each N-ACTION with success, then `delay` s later opens an association of its own to
    `port_scp`, taking the SCP role (PS3.4 J.3.3), and calls ``send(association, action information)`` on it;
    yields its port."""
    import threading

    from pynetdicom import AE, build_role

    def report(information) -> None:
        time.sleep(delay)
        ae = AE(ae_title=ae_title)
        ae.add_requested_context(PUSH)
        assoc = ae.associate("127.0.0.1", port_scp, ae_title="GDCMSCU",
                             ext_neg=[build_role(PUSH, scp_role=True, scu_role=False)])
        try:
            send(assoc, information)
        finally:
            assoc.release()

    def on_action(event):
        threading.Thread(target=report, args=(event.action_information,)).start()
        return 0x0000, None

    with answering_peer(on_action) as port:
        yield port


def stored_files(storage) -> list[str]:
    return sorted(os.path.join(folder, name) for folder, _, names in os.walk(storage) for name in names
                  if name.endswith(".dcm"))


def test_store_then_commit_on_the_same_association(dataset_dir, tmp_path):
    with dicomscu.serve(tmp_path / "archive") as served:
        done = run_inprocess("--store", "--commit", "--format", "json", "-r", "127.0.0.1", str(served.port),
                             str(dataset_dir / "small"))
    document = json.loads(done.stdout)
    commitment = document["commitment"]
    assert done.returncode == 0 and document["summary"]["stored"] == 60
    assert (commitment["requested"], commitment["committed"], commitment["failed"], commitment["unanswered"]) == \
        (60, 60, [], [])
    assert commitment["results_on_new_association"] == 0 and len(commitment["transactions"]) == 1


def test_an_instance_deleted_or_cut_on_the_archive_is_failed_with_its_reason(dataset_dir, tmp_path):
    with dicomscu.serve(tmp_path / "archive") as served:
        assert run_inprocess("--store", "-r", "127.0.0.1", str(served.port), str(dataset_dir / "big")).returncode == 0
        deleted, cut = stored_files(served.storage)[:2]
        os.remove(deleted)
        with open(cut, "r+b") as handle:
            handle.truncate(os.path.getsize(cut) // 2)
        done = run_inprocess("--commit", "--format", "json", "127.0.0.1", str(served.port),
                             str(dataset_dir / "big"))
        text = run_inprocess("--commit", "127.0.0.1", str(served.port), str(dataset_dir / "big"))
    document = json.loads(done.stdout)
    reasons = {failure["sop_instance_uid"]: failure["failure_reason"] for failure in document["failed"]}
    assert reasons == {Path(deleted).stem: 0x0112, Path(cut).stem: 0x0110}
    assert document["committed"] == 4 and document["unanswered"] == [] and done.returncode == 1
    assert text.returncode == 1 and "4 of 6 instance(s) committed" in text.stdout
    assert f"{Path(deleted).stem}: not committed: no such object instance (0x0112)" in text.stderr
    assert f"{Path(cut).stem}: not committed: processing failure (0x0110)" in text.stderr


def test_the_journal_records_commitment_so_a_rerun_asks_only_for_the_rest(dataset_dir, tmp_path):
    journal = str(tmp_path / "journal.sqlite")
    with dicomscu.serve(tmp_path / "archive") as served:
        port = str(served.port)
        stored = run_inprocess("--store", "--journal", journal, "-r", "127.0.0.1", port, str(dataset_dir / "small"))
        assert stored.returncode == 0  # stored, not yet committed (an interrupted migration)
        first = run_inprocess("--commit", "--journal", journal, "--format", "json", "127.0.0.1", port,
                              str(dataset_dir / "small"))
        again = run_inprocess("--commit", "--journal", journal, "--format", "json", "127.0.0.1", port,
                              str(dataset_dir / "small"))
        both = run_inprocess("--store", "--commit", "--journal", journal, "-r", "127.0.0.1", port,
                             str(dataset_dir))
    assert (json.loads(first.stdout)["requested"], json.loads(first.stdout)["committed"]) == (60, 60)
    assert (json.loads(again.stdout)["requested"], json.loads(again.stdout)["already_committed"]) == (0, 60)
    assert again.returncode == 0
    assert both.returncode == 0 and "6 of 6 instance(s) committed" in both.stdout
    assert "60 already committed (journal)" in both.stdout


def test_a_journal_from_before_commitment_is_upgraded_in_place(tmp_path):
    from dicomscu.files.journal import Journal

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE stored (sop_instance_uid TEXT PRIMARY KEY, path TEXT, peer TEXT, at REAL)")
        db.execute("INSERT INTO stored VALUES ('1.2.3', 'a.dcm', 'X@h:1', 0)")
    journal = Journal(str(path))
    assert "1.2.3" in journal and not journal.is_committed("1.2.3")
    journal.record_commitment([("1.2.840.10008.5.1.4.1.1.7", "1.2.3")])
    journal.record("1.2.4", "b.dcm", "X@h:1")
    assert journal.is_committed("1.2.3") and not journal.is_committed("1.2.4") and len(journal) == 2
    journal.close()


def test_a_peer_that_never_sends_the_result_is_a_bounded_wait_and_an_unanswered_count(dataset_dir):
    asked = []

    def on_action(event):
        asked.append(event.request.MessageID)
        return 0x0000, None  # "I will look", and never a word more

    with answering_peer(on_action) as port:
        started = time.monotonic()
        done = run_inprocess("--commit", "--commit-timeout", "1", "127.0.0.1", str(port), str(dataset_dir / "big"))
        took = time.monotonic() - started
    assert asked and done.returncode == 1 and took < 15
    assert "0 of 6 instance(s) committed" in done.stdout and "6 unanswered" in done.stdout
    assert "no result came" in done.stderr and "--port-scp" in done.stderr


def test_dicomscu_against_orthanc_whose_result_comes_on_a_new_association(dataset_dir, tmp_path):
    """Orthanc always reports on an association of its own, to the requestor as its DicomModalities places it."""
    port_scp = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", modalities={"scu": ["COMMITSCU", "127.0.0.1", port_scp]})
    try:
        done = run_dicomscu("--store", "--commit", "--format", "json", "--aetitle", "COMMITSCU", "--call", "ORTHANC",
                            "--port-scp", str(port_scp), "-r", "127.0.0.1", str(orthanc.dicom_port),
                            str(dataset_dir))
        orthanc.rest(f"/instances/{orthanc.rest('/instances')[0]}", method="DELETE")  # gone from the archive
        later = run_dicomscu("--commit", "--format", "json", "--aetitle", "COMMITSCU", "--call", "ORTHANC",
                             "--port-scp", str(port_scp), "-r", "127.0.0.1", str(orthanc.dicom_port),
                             str(dataset_dir))
    finally:
        orthanc.close()
    commitment = json.loads(done.stdout)["commitment"]
    assert done.returncode == 0, done.stderr
    assert (commitment["committed"], commitment["failed"], commitment["unanswered"]) == (66, [], [])
    assert commitment["results_on_new_association"] == 1
    again = json.loads(later.stdout)
    assert later.returncode == 1 and again["committed"] == 65
    assert [failure["failure_reason"] for failure in again["failed"]] == [0x0112]


def test_orthanc_asks_serve_which_reports_on_a_new_association(dataset_dir, tmp_path):
    """Orthanc's SCU closes its association after the request: serve's result goes to Orthanc's AE by --dest."""
    orthanc = Orthanc(tmp_path / "orthanc")
    try:
        with dicomscu.serve(tmp_path / "archive",
                            destinations={"ORTHANC": ("127.0.0.1", orthanc.dicom_port)}) as served:
            assert run_inprocess("--store", "-r", "127.0.0.1", str(served.port), str(dataset_dir / "big")).returncode \
                == 0
            deleted = stored_files(served.storage)[0]
            os.remove(deleted)
            orthanc.rest("/modalities/serve", "PUT",
                          json.dumps({"AET": "DICOMSCU", "Host": "127.0.0.1", "Port": served.port}).encode())
            wanted = [{"SOPClassUID": sop_class, "SOPInstanceUID": sop_instance}
                      for sop_class, sop_instance in references_in([str(dataset_dir / "big")])]
            asked = orthanc.rest("/modalities/serve/storage-commitment", "POST",
                                 json.dumps({"DicomInstances": wanted}).encode())
            deadline = time.monotonic() + 30
            result = orthanc.rest(asked["Path"])
            while result["Status"] == "Pending" and time.monotonic() < deadline:
                time.sleep(0.1)
                result = orthanc.rest(asked["Path"])
    finally:
        orthanc.close()
    assert result["Status"] == "Failure"  # Orthanc's word for "not every instance committed"
    assert len(result["Success"]) == 5
    assert [(failure["FailureReason"], failure["SOPInstanceUID"]) for failure in result["Failures"]] == \
        [(0x0112, Path(deleted).stem)]


def test_ten_thousand_instances_in_split_requests_with_flat_memory(tmp_path):
    """10,000 instances: requests of 1,000, all committed; the client's memory does not grow with the count."""
    from dicomscu.sample import write_bench_set

    data = write_bench_set(tmp_path / "data", big=0, small=10000, patients=10) / "small"
    files = sorted(str(path) for path in data.iterdir())
    program = ("import resource, sys\nfrom dicomscu.app import main\ncode = main(sys.argv[1:])\n"
               "sys.stderr.write('peak %d\\n' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
               "sys.exit(code)\n")
    script = tmp_path / "measure.py"
    script.write_text(program)

    def run(*args: str):
        import subprocess

        done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
        peak = int(done.stderr.rsplit("peak ", 1)[1].split()[0])
        return done, json.loads(done.stdout[done.stdout.index("{"):]), peak

    with dicomscu.serve(tmp_path / "archive") as served:
        port = str(served.port)
        stored, store_document, _ = run("--store", "--format", "json", "127.0.0.1", port, str(data))
        few, few_document, few_peak = run("--commit", "--format", "json", "127.0.0.1", port, *files[:1000])
        many, many_document, many_peak = run("--commit", "--format", "json", "127.0.0.1", port, str(data))
    assert stored.returncode == 0 and store_document["summary"]["stored"] == 10000
    assert few.returncode == 0 and few_document["committed"] == 1000 and len(few_document["transactions"]) == 1
    assert many.returncode == 0 and many_document["committed"] == 10000 and len(many_document["transactions"]) == 10
    assert many_peak - few_peak < 30 * 1024, (few_peak, many_peak)  # kB: 10x the instances, not 10x the memory


def test_commit_usage_errors():
    web = run_inprocess("--commit", "http://127.0.0.1:1/dicom-web", "a.dcm")
    assert web.returncode == 2 and "DIMSE service" in web.stderr
    find = run_inprocess("--find", "--commit", "127.0.0.1", "104")
    assert find.returncode == 2 and "--commit follows --store" in find.stderr
    nothing = run_inprocess("--commit", "127.0.0.1", "104")
    assert nothing.returncode == 2 and "--commit needs the instances" in nothing.stderr
    timeout = run_inprocess("--commit", "--commit-timeout", "0", "127.0.0.1", "104", "a.dcm")
    assert timeout.returncode == 2 and "--commit-timeout" in timeout.stderr


def test_commit_api_returns_a_typed_report(dataset_dir, tmp_path):
    with dicomscu.serve(tmp_path / "archive") as served:
        report = dicomscu.store(served.peer, [str(dataset_dir / "big")], commit=True)
        missing = dicomscu.commit(served.peer, [dicomscu.Reference("1.2.840.10008.5.1.4.1.1.7", "1.2.3.999")],
                                  batch=1)
    assert report.ok and report.commitment is not None and len(report.commitment.committed) == 6
    assert not missing.ok and [f.reason for f in missing.failed] == [0x0112]


def test_a_late_result_on_a_new_association_after_ours_closed_is_matched(dataset_dir):
    """A third implementation (pynetdicom) answers the request, lets our association go, and reports seconds later
    on an association of its own, taking the SCP role: the Transaction UID ties it to the request."""
    from pydicom.dataset import Dataset

    port_scp = free_port()
    delivered = []

    def send(assoc, information) -> None:
        references = list(information.ReferencedSOPSequence)
        result = Dataset()
        result.TransactionUID = information.TransactionUID
        result.ReferencedSOPSequence = references[1:]
        failed = Dataset()
        failed.ReferencedSOPClassUID = references[0].ReferencedSOPClassUID
        failed.ReferencedSOPInstanceUID = references[0].ReferencedSOPInstanceUID
        failed.FailureReason = 0x0110
        result.FailedSOPSequence = [failed]
        delivered.append(assoc.send_n_event_report(result, 2, PUSH, PUSH_INSTANCE)[0].Status)

    # 3 s: past our quiet wait on the association, which is released by then
    with reporting_peer(port_scp, "LATE", 3.0, send) as port:
        done = run_inprocess("--commit", "--format", "json", "--port-scp", str(port_scp), "--commit-timeout", "20",
                             "127.0.0.1", str(port), str(dataset_dir / "big"))
    document = json.loads(done.stdout)
    assert delivered == [0x0000]
    assert (document["committed"], len(document["failed"]), document["unanswered"]) == (5, 1, [])
    assert document["failed"][0]["failure_reason"] == 0x0110 and document["results_on_new_association"] == 1
    assert done.returncode == 1  # one instance not committed


def test_commit_the_answers_of_an_image_level_find(dataset_dir, tmp_path):
    with dicomscu.serve(tmp_path / "archive") as served:
        port = str(served.port)
        assert run_inprocess("--store", "-r", "127.0.0.1", port, str(dataset_dir / "big")).returncode == 0
        found = run_inprocess("--find", "--image", "--studyroot", "--format", "json", "127.0.0.1", port,
                              "-k", "StudyInstanceUID=", "-k", "SeriesInstanceUID=", "-k", "8,16", "-k", "8,18")
        answers = json.loads(found.stdout)
        done = run_inprocess("--commit", "127.0.0.1", port, "--from-json", "-", stdin=found.stdout)
        bare = run_inprocess("--commit", "127.0.0.1", port, "--from-json", "-",
                             stdin=json.dumps([{"00100020": {"vr": "LO", "Value": ["X"]}}]))
    assert len(answers) == 6 and done.returncode == 0 and "6 of 6 instance(s) committed" in done.stdout
    assert bare.returncode == 2 and "SOPClassUID and SOPInstanceUID" in bare.stderr


def test_serve_refuses_malformed_requests_and_keeps_the_association(tmp_path):
    """A request without its Transaction UID, or for another action, is refused with the status PS3.7 names;
    the association goes on (a third implementation, pynetdicom, as the requestor)."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE

    with dicomscu.serve(tmp_path / "archive") as served:
        ae = AE(ae_title="PROBE")
        ae.add_requested_context(PUSH)
        ae.add_requested_context("1.2.840.10008.1.1")
        assoc = ae.associate("127.0.0.1", served.port, ae_title="DICOMSCU")
        assert assoc.is_established
        no_transaction = Dataset()
        no_transaction.ReferencedSOPSequence = []
        status, _ = assoc.send_n_action(no_transaction, 1, PUSH, PUSH_INSTANCE)
        assert status.Status == 0x0120
        request = Dataset()
        request.TransactionUID = "2.25.7"
        request.ReferencedSOPSequence = []
        status, _ = assoc.send_n_action(request, 2, PUSH, PUSH_INSTANCE)
        assert status.Status == 0x0123  # no such action
        status, _ = assoc.send_n_action(request, 1, PUSH, "1.2.3")
        assert status.Status == 0x0117  # the well-known instance is the only one
        assert assoc.send_c_echo().Status == 0x0000  # and the association goes on
        assoc.release()


def test_unreadable_or_stray_results_are_answered_and_never_counted(dataset_dir):
    """A result whose data set is cut, and one for a transaction this run never asked about, are answered with
    a failure or ignored; the instances stay unanswered (exit 1), never committed."""
    from pydicom.dataset import Dataset

    port_scp = free_port()
    answers = []

    def send(assoc, information) -> None:
        stray = Dataset()
        stray.TransactionUID = "2.25.12345"  # asked by nobody
        stray.ReferencedSOPSequence = []
        answers.append(assoc.send_n_event_report(stray, 1, PUSH, PUSH_INSTANCE)[0])
        empty = Dataset()  # no Transaction UID at all
        empty.ReferencedSOPSequence = []
        answers.append(assoc.send_n_event_report(empty, 1, PUSH, PUSH_INSTANCE)[0])

    with reporting_peer(port_scp, "ODD", 0.3, send) as port:
        done = run_inprocess("--commit", "--format", "json", "--port-scp", str(port_scp), "--commit-timeout", "3",
                             "127.0.0.1", str(port), str(dataset_dir / "big"))
    document = json.loads(done.stdout)
    assert [status.Status for status in answers] == [0x0000, 0x0120]  # ignored; missing attribute
    assert document["committed"] == 0 and len(document["unanswered"]) == 6 and done.returncode == 1


def test_a_peer_without_storage_commitment_is_said_so_after_the_store(storescp, dataset_dir):
    """DCMTK storescp stores but offers no commitment: the files are stored, the error says the context was
    refused, and the exit status says the instances are not committed."""
    done = run_inprocess("--store", "--commit", "127.0.0.1", str(storescp.port), str(dataset_dir / "big"))
    assert "6 of 6 file(s) stored" in done.stdout and "0 of 6 instance(s) committed" in done.stdout
    assert "every presentation context was refused (Storage Commitment Push Model SOP Class)" in done.stderr
    assert "the association failed" in done.stderr and done.returncode == 6


def test_a_refused_request_leaves_its_instances_unanswered_with_the_status(dataset_dir):
    with answering_peer(lambda event: (0x0213, None)) as port:
        done = run_inprocess("--commit", "--format", "json", "127.0.0.1", str(port), str(dataset_dir / "big"))
        said = run_inprocess("--commit", "127.0.0.1", str(port), str(dataset_dir / "big"))
    document = json.loads(done.stdout)
    assert document["refused_requests"][0]["code"] == 0x0213 and len(document["unanswered"]) == 6
    assert done.returncode == 1 and "the request was refused (0x0213" in said.stderr


def test_making_commitments_durable_waits_for_no_query(tmp_path):
    """The commitment's sync of the index takes no lock and waits for no checkpoint: a reader holding a
    snapshot (a long QIDO stream, say) delays neither it nor the stores behind it."""
    from dicomscu.server.index import Index

    index = Index(str(tmp_path / "index.sqlite"))
    index.add({"sop_uid": "1.2.3", "sop_class": "1.2.840.10008.5.1.4.1.1.7", "path": "a.dcm"})
    reader = sqlite3.connect(str(tmp_path / "index.sqlite"))
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM instances").fetchone() == (1,)  # a snapshot held open...
    index.add({"sop_uid": "1.2.4", "sop_class": "1.2.840.10008.5.1.4.1.1.7", "path": "b.dcm"})  # ...now old
    began = time.monotonic()
    index.make_durable()  # (a FULL checkpoint would wait for that reader, holding the index's lock, 5 s)
    index.add({"sop_uid": "1.2.5", "sop_class": "1.2.840.10008.5.1.4.1.1.7", "path": "c.dcm"})
    assert time.monotonic() - began < 1.0
    reader.rollback()
    reader.close()
    assert index.count() == 3
    index.close()
