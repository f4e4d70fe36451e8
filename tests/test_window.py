"""The asynchronous operations window (PS3.7 D.3.3.3): several C-STOREs outstanding on one association.

Our side proposes a window only when asked (``--window N``, ``Peer.window``): some systems drop an
association that proposes one.  serve grants one; it then holds the responses of the C-STOREs already
received, writes their rows in one transaction and answers each only after its row is written.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

import dicomscu
from dicomscu import Peer
from dicomscu.operations.results import FAILED, OK
from dicomscu.protocol import commands as dimse
from dicomscu.protocol import negotiation
from dicomscu.protocol import pdu as pdus
from dicomscu.server.pacs import Pacs, ServerConfig
from dicomscu.transport.association import request_pdu
from dicomscu.transport.channel import AssociationEnded
from dicomscu.transport.listener import AcceptPolicy, Listener
from dicomscu.uids import IMPLICIT_VR_LE

from conftest import run_dicomscu, run_inprocess
from peers import StoreSCP, storage_scp
from test_serve_integrity import slowed_writes

SC = "1.2.840.10008.5.1.4.1.1.7"


def _request(window: tuple[int, int] | None) -> pdus.AssociateRQ:
    user = pdus.UserInformation(16384, "1.2.3", async_window=window)
    return pdus.AssociateRQ("ANY", "ME", (pdus.ProposedContext(1, SC, (IMPLICIT_VR_LE,)),), user)


@pytest.mark.parametrize("asked, ours, granted, agreed", [
    (None, 64, None, 1),        # not proposed: not answered, one at a time
    ((8, 1), 64, (8, 1), 8),    # never more than asked
    ((128, 1), 64, (64, 1), 64),  # never more than we grant
    ((0, 0), 64, (64, 1), 64),  # "unlimited" asked: ours
    ((8, 1), 1, (1, 1), 1),     # a provider that takes one at a time says so
])
def test_the_window_agreed_is_the_smaller_of_both_and_never_unlimited(asked, ours, granted, agreed):
    request = _request(asked)
    accept = negotiation.answer(request, {SC: (IMPLICIT_VR_LE,)}, 16384, window=ours)
    assert accept.user.async_window == granted
    assert negotiation.window(request, accept) == agreed
    encoded = pdus.encode(accept)  # what travels is what was meant
    assert pdus.decode(encoded[0], encoded[6:]).user.async_window == granted


def test_a_peer_that_answers_no_window_or_unlimited_leaves_one_or_what_we_asked():
    empty = pdus.AssociateAC("ANY", "ME", (), pdus.UserInformation(16384, "1.2.3"))
    assert negotiation.window(_request((16, 1)), empty) == 1
    unlimited = pdus.AssociateAC("ANY", "ME", (), pdus.UserInformation(16384, "1.2.3", async_window=(0, 0)))
    assert negotiation.window(_request((16, 1)), unlimited) == 16


def test_no_window_is_proposed_unless_asked_for_and_only_to_store(pacs):
    proposals = [negotiation.Proposal(SC, [IMPLICIT_VR_LE])]
    assert request_pdu(Peer("127.0.0.1", 104), proposals).user.async_window is None
    assert request_pdu(Peer("127.0.0.1", 104), proposals, window=12).user.async_window == (12, 1)
    # a Peer's window is for its C-STOREs: an echo or a query to the same peer proposes none
    asked: list = []
    answer = negotiation.answer

    def recording(request, *args, **kwargs):
        asked.append(request.user.async_window)
        return answer(request, *args, **kwargs)

    negotiation.answer = recording
    try:
        peer = Peer("127.0.0.1", pacs.port, called_ae="DICOMSCU", window=12)
        assert dicomscu.echo(peer).status.ok
        query = dicomscu.build_query("studyroot", "study", ["PatientID"])
        assert dicomscu.find(peer, query).ok
    finally:
        negotiation.answer = answer
    assert asked == [None, None]


@pytest.mark.parametrize("bad", [0, -1, 257, 2.5, True])
def test_a_window_out_of_range_is_refused_by_name(bad):
    with pytest.raises(dicomscu.UsageError, match="window"):
        Peer("127.0.0.1", 104, window=bad)


def test_the_command_line_takes_window_and_refuses_nonsense(tmp_path):
    refused = run_inprocess("--store", "--window", "0", "127.0.0.1", "1", str(tmp_path))
    assert refused.returncode != 0 and "--window" in refused.stderr and "Traceback" not in refused.stderr
    web = run_inprocess("--store", "--window", "8", "http://127.0.0.1:1/dicom-web", str(tmp_path))
    assert web.returncode == 2 and "-j N" in web.stderr  # a URL: said, not ignored
    pdu = run_inprocess("--store", "--max-pdu", "16384", "http://127.0.0.1:1/dicom-web", str(tmp_path))
    assert pdu.returncode == 2 and "no PDUs" in pdu.stderr
    profile = tmp_path / "profiles.toml"
    profile.write_text('[pacs]\nhost = "127.0.0.1"\nport = 1\nwindow = "x"\n')
    wrong = run_inprocess("--echo", "--config", str(profile), "@pacs")
    assert wrong.returncode != 0 and "window" in wrong.stderr


@pytest.fixture
def pacs(tmp_path):
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage")))
    server.start()
    yield server
    server.stop()


def _files(dataset_dir: Path, count: int | None = None) -> list[Path]:
    return sorted((dataset_dir / "small").iterdir())[:count]


def test_serve_writes_a_window_of_rows_in_one_transaction_and_answers_each_after_its_row(pacs, dataset_dir):
    """A slow transaction (20 ms) lets requests pile up: 60 instances take far fewer transactions than 60,
    and every "stored" the client hears is for a row already written."""
    written = slowed_writes(pacs.index, 0.02)
    heard_before_written: list[str] = []

    def heard(result):
        if result.outcome == OK and result.sop_instance not in written:
            heard_before_written.append(result.sop_instance)

    peer = Peer("127.0.0.1", pacs.port, called_ae="DICOMSCU", window=16)
    report = dicomscu.store(peer, [str(p) for p in _files(dataset_dir)], on_result=heard)
    assert report.counts[OK] == 60 and report.ok, report.counts
    assert heard_before_written == []
    assert pacs.index.count() == 60 == len(list(Path(pacs.storage).rglob("*.dcm")))
    assert pacs.index.transactions <= 20, pacs.index.transactions


def test_a_failed_transaction_fails_every_store_held_for_it_and_keeps_none_of_their_files(pacs, dataset_dir):
    """The first transaction fails ("disk full"): each C-STORE it held hears 0xA700 and its file goes; those
    after it are stored.  Files and rows agree."""
    write_rows = pacs.index.write_rows
    failed_rows: list[str] = []

    def first_fails(rows):
        if not failed_rows:
            time.sleep(0.05)  # (the next requests arrive meanwhile)
            failed_rows.extend(row["sop_uid"] for row in rows)
            raise sqlite3.OperationalError("database or disk is full")
        write_rows(rows)

    pacs.index.write_rows = first_fails
    results = []
    peer = Peer("127.0.0.1", pacs.port, called_ae="DICOMSCU", window=8)
    report = dicomscu.store(peer, [str(p) for p in _files(dataset_dir, 30)], on_result=results.append)
    failed = {r.sop_instance for r in results if r.outcome == FAILED}
    assert failed == set(failed_rows) and len(failed) >= 1
    assert all(r.status is not None and r.status.code == 0xA700 for r in results if r.outcome == FAILED)
    assert report.counts[OK] == 30 - len(failed)
    kept = {p.stem for p in Path(pacs.storage).rglob("*.dcm")}
    assert pacs.index.count() == len(kept) == 30 - len(failed)
    assert all(pacs.index.path_of(uid) is None for uid in failed)


class _Batching:
    """A provider of our own transport that answers only when no request came for 0.3 s, in reverse order
    (a peer may answer outstanding operations in any order); it records how many it held each time."""

    def __init__(self, window: int, abort_after: int | None = None) -> None:
        self.batches: list[int] = []
        self.abort_after = abort_after
        self.associations = 0
        self.listener = Listener(("127.0.0.1", 0), AcceptPolicy("BATCHING", {SC: (IMPLICIT_VR_LE,)}, window=window),
                                 self.serve)

    def serve(self, channel) -> None:
        self.associations += 1
        first = self.associations == 1
        received = 0
        try:
            while True:
                held = []
                while True:
                    message = channel.poll(0.3)
                    if message is None:
                        break
                    held.append(message)
                    received += 1
                    if first and self.abort_after is not None and received == self.abort_after:
                        channel.abort()
                        return
                if held:
                    self.batches.append(len(held))
                for message in reversed(held):
                    request = message.command
                    channel.send_encoded(message.context_id, dimse.c_store_rsp(
                        request.MessageID, request.AffectedSOPClassUID, request.AffectedSOPInstanceUID, 0),
                        None, "C-STORE-RSP")
        except AssociationEnded:
            channel.release()

    def __enter__(self) -> "_Batching":
        self.listener.start()
        return self

    def __exit__(self, *exc) -> None:
        self.listener.stop()

    @property
    def port(self) -> int:
        return self.listener.port


def test_the_client_keeps_no_more_outstanding_than_the_peer_granted_and_matches_responses_by_id(dataset_dir):
    """We ask for 32, the peer grants 4: the peer never sees more than 4 requests before it answers, and
    answers given in reverse order are each matched to their own file."""
    with _Batching(window=4) as peer_scp:
        results = []
        report = dicomscu.store(Peer("127.0.0.1", peer_scp.port, window=32), [str(p) for p in _files(dataset_dir, 18)],
                                on_result=results.append)
    assert report.counts[OK] == 18 and report.ok
    assert peer_scp.batches == [4, 4, 4, 4, 2]
    assert sorted(r.path for r in results) == sorted(str(p) for p in _files(dataset_dir, 18))


def test_files_in_flight_when_the_peer_aborts_fail_with_the_reason_and_the_rest_go_on_a_new_association(
        dataset_dir):
    with _Batching(window=8, abort_after=5) as peer_scp:
        results = []
        report = dicomscu.store(Peer("127.0.0.1", peer_scp.port, window=8), [str(p) for p in _files(dataset_dir, 20)],
                                on_result=results.append)
    lost = [r for r in results if r.outcome == FAILED]
    assert len(lost) >= 5 and all("in flight" in r.message for r in lost)
    assert report.counts[OK] + len(lost) == 20 and peer_scp.associations == 2
    assert len({r.path for r in results}) == 20  # each file has exactly one result


def test_dcmtk_storescp_is_sent_one_at_a_time_when_asked_for_a_window(tmp_path, dataset_dir):
    """DCMTK answers no window: the proposal costs nothing, every file arrives."""
    peer_scp = StoreSCP(tmp_path / "received")
    try:
        done = run_dicomscu("--store", "--window", "16", "--call", "STORESCP", "127.0.0.1", str(peer_scp.port),
                            str(dataset_dir / "small"))
    finally:
        peer_scp.close()
    assert done.returncode == 0, done.stderr
    assert len(peer_scp.received()) == 60


def test_pynetdicom_storage_scp_gets_every_file_when_asked_for_a_window(dataset_dir):
    received = []

    def on_store(event):
        received.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    with storage_scp("PYNET", [SC], on_store) as port:
        report = dicomscu.store(Peer("127.0.0.1", port, window=16), [str(p) for p in _files(dataset_dir)])
    assert report.counts[OK] == 60 and len(received) == 60


def test_serve_by_command_line_with_a_window_keeps_every_file_whole(tmp_path, dataset_dir):
    """The whole path a user takes: serve as a process granting 4 (``serve --window 4``), ``--store --window
    128``, the data sets unchanged."""
    from conftest import dataset_digests
    from peers import free_port, wait_for_port
    import subprocess
    import sys

    port = free_port()
    storage = tmp_path / "storage"
    server = subprocess.Popen([sys.executable, "-m", "dicomscu", "serve", "--port", str(port), "--storage",
                               str(storage), "--window", "4"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, server)
        done = run_dicomscu("--store", "--window", "128", "-D", "127.0.0.1", str(port),
                            str(dataset_dir / "small"), str(dataset_dir / "big"))
        assert done.returncode == 0, done.stderr
        assert "up to 4 operations outstanding" in done.stderr  # serve's --window: what it grants
    finally:
        server.terminate()
        server.wait(timeout=20)
    sent = dataset_digests(_files(dataset_dir) + sorted((dataset_dir / "big").iterdir()))
    assert dataset_digests(storage.rglob("*.dcm")) == sent
    umask = os.umask(0)
    os.umask(umask)
    assert {stat.S_IMODE(path.stat().st_mode) for path in storage.rglob("*.dcm")} == {0o666 & ~umask}


def test_within_one_window_a_duplicate_is_refused_an_echo_waits_its_turn_and_answers_keep_their_order(tmp_path,
                                                                                                     dataset_dir):
    """Raw requests on one association with a window, sent before any answer is read: A, A again, B, then a
    C-ECHO.  Under --no-overwrite the second A is refused 0x0111 though A's row was only staged; the echo
    is answered after the three C-STOREs; each answer is in its request's place."""
    from dicomscu.files.probe import probe
    from dicomscu.protocol.negotiation import Proposal
    from dicomscu.transport.association import associate
    from dicomscu.uids import VERIFICATION

    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"), overwrite=False))
    server.start()
    try:
        first, second = (probe(path.read_bytes()) for path in _files(dataset_dir, 2))
        data = {info.sop_instance: path.read_bytes()[info.dataset_offset:]
                for info, path in zip((first, second), _files(dataset_dir, 2))}
        peer = Peer("127.0.0.1", server.port, called_ae="DICOMSCU", window=8)
        with associate(peer, [Proposal(first.sop_class, [first.transfer_syntax]),
                              Proposal(VERIFICATION, [IMPLICIT_VR_LE])], window=peer.window) as channel:
            assert channel.window == 8
            context = channel.context_for(first.sop_class, first.transfer_syntax).context_id
            sent = []
            for info in (first, first, second):
                message_id = channel.next_message_id()
                channel.send_encoded(context, dimse.c_store_rq(message_id, info.sop_class, info.sop_instance),
                                     data[info.sop_instance], "C-STORE")
                sent.append(message_id)
            echo_id = channel.next_message_id()
            channel.send_encoded(channel.context_for(VERIFICATION).context_id, dimse.c_echo_rq(echo_id), None,
                                 "C-ECHO")
            answers = [channel.receive_any("response").command for _ in range(4)]
        assert [a.MessageIDBeingRespondedTo for a in answers] == [*sent, echo_id]
        assert [a.Status for a in answers] == [0x0000, 0x0111, 0x0000, 0x0000]
        assert server.index.count() == 2
    finally:
        server.stop()


def test_a_requestor_that_asks_for_a_window_but_waits_for_each_answer_is_answered_at_once(pacs, dataset_dir):
    """pynetdicom proposes a window (16) and then sends one C-STORE at a time, waiting for each answer: serve
    holds nothing it has no reason to (no request waiting), so each is answered within pynetdicom's 5 s
    DIMSE timeout, not when the window would fill."""
    from pynetdicom import AE
    from pynetdicom.pdu_primitives import AsynchronousOperationsWindowNegotiation

    ae = AE(ae_title="PYNET")
    ae.dimse_timeout = 5
    ae.add_requested_context(SC, IMPLICIT_VR_LE)
    window = AsynchronousOperationsWindowNegotiation()
    window.maximum_number_operations_invoked = 16
    window.maximum_number_operations_performed = 1
    assoc = ae.associate("127.0.0.1", pacs.port, ae_title="DICOMSCU", ext_neg=[window])
    assert assoc.is_established
    try:
        agreed = [item for item in assoc.acceptor.user_information
                  if isinstance(item, AsynchronousOperationsWindowNegotiation)]
        assert [(i.maximum_number_operations_invoked, i.maximum_number_operations_performed) for i in agreed] \
            == [(16, 1)]
        statuses = [assoc.send_c_store(str(path)).Status for path in _files(dataset_dir, 8)]
    finally:
        assoc.release()
    assert statuses == [0] * 8 and pacs.index.count() == 8


def test_ctrl_c_with_a_window_in_flight_ends_at_once_and_the_journal_resends_at_most_the_window(pacs,
                                                                                                dataset_dir,
                                                                                                tmp_path):
    """Interrupted with up to 8 C-STOREs outstanding: exit 130 promptly; what was in flight was never
    confirmed, so it is not in the journal and goes again, and nothing else does."""
    import signal
    import subprocess
    import sys

    received: list[str] = []
    stage = pacs.index.stage

    def slow(row):  # each instance kept, slowly
        time.sleep(0.03)
        received.append(row["sop_uid"])
        return stage(row)

    pacs.index.stage = slow
    journal = tmp_path / "journal.sqlite"
    args = ["--store", "--window", "8", "--call", "DICOMSCU", "127.0.0.1", str(pacs.port), "--journal", str(journal),
            str(dataset_dir / "small")]
    process = subprocess.Popen([sys.executable, "-m", "dicomscu", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(received) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    began = time.monotonic()
    process.communicate(timeout=30)
    assert process.returncode == 130 and time.monotonic() - began < 5
    first = len(received)
    assert 0 < first < 60
    again = run_dicomscu(*args)
    assert again.returncode == 0, again.stderr
    assert len(set(received)) == 60 and pacs.index.count() == 60
    assert len(received) - 60 <= 8, len(received) - 60  # sent twice: at most what was in flight
