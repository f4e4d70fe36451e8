"""Misbehaving peers, one case each: exit code, one-line message, bounded time, no traceback, files on disk.

The table of cases is also the table of docs/reliability.md (kept in step by
test_reliability_doc_lists_every_case).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import hostile as h
from conftest import run_dicomscu

CT = "1.2.840.10008.5.1.4.1.1.2"
SC = "1.2.840.10008.5.1.4.1.1.7"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Case:
    name: str
    script: object  # (conn) -> None
    args: tuple  # dicomscu arguments after host and port
    code: int
    message: str  # must appear in the one error line (or the summary)
    seconds: float = 10.0  # upper bound of the run


def echo_then(reply):
    """Accept, read the C-ECHO-RQ, send `reply(request)` (bytes), then wait for release."""
    def script(conn):
        h.accept(conn)
        request = h.read_request(conn)
        conn.sendall(reply(request))
        h.serve_release(conn)
    return script


def echo_rsp(request, status=0x0000, message_id=None, context_id=None):
    message_id = request.message_id if message_id is None else message_id
    return h.p_data(context_id or request.context_id, 0x03, h.response(0x8030, message_id, status))


def rq_then(data):
    def script(conn):
        h.read_pdu(conn)
        conn.sendall(data)
        h.stall(20)
    return script


REJECTIONS = [
    ((1, 1, 1), "permanent", "no reason given"),
    ((1, 1, 2), "permanent", "application context name not supported"),
    ((1, 1, 3), "permanent", "calling AE title not recognized"),
    ((1, 1, 7), "permanent", "called AE title not recognized"),
    ((2, 1, 1), "transient", "no reason given"),
    ((1, 2, 1), "permanent", "service provider (ACSE): no reason given"),
    ((1, 2, 2), "permanent", "protocol version not supported"),
    ((2, 3, 1), "transient", "temporary congestion"),
    ((2, 3, 2), "transient", "local limit exceeded"),
    ((1, 1, 9), "permanent", "reason 9"),
]

CASES = [
    Case("silent after connect", lambda conn: h.stall(20), ("--acse-timeout", "1.5"), 5, "association timeout"),
    Case("closes right after connect", lambda conn: conn.close(), (), 7, "closed the connection"),
    Case("half an A-ASSOCIATE-AC then stalls", rq_then(struct.pack(">BBL", 2, 0, 100) + b"\0" * 10),
         ("--timeout", "1.5"), 5, "stopped sending in the middle of a PDU"),
    Case("PDU length 0xFFFFFFFF", rq_then(struct.pack(">BBL", 2, 0, 0xFFFFFFFF) + b"\0" * 64), (), 7,
         "4294967295 bytes", 5),
    Case("unknown PDU type", rq_then(struct.pack(">BBL", 0x09, 0, 4) + b"\0" * 4), (), 7, "unknown PDU type 0x09"),
    Case("truncated items in the A-ASSOCIATE-AC",
         rq_then(struct.pack(">BBL", 2, 0, 80) + struct.pack(">HH", 1, 0) + b"A" * 32 + b"\0" * 32
                 + struct.pack(">BBH", 0x21, 0, 500) + b"\0" * 8), (), 7, "malformed PDU"),
    *[Case(f"A-ASSOCIATE-RJ {r}", rq_then(h.associate_rj(*r)), (), 6, f"rejected ({kind})", 5)
      for r, kind, _ in REJECTIONS],
    *[Case(f"A-ASSOCIATE-RJ {r} reason", rq_then(h.associate_rj(*r)), (), 6, text, 5)
      for r, _, text in REJECTIONS],
    Case("A-ABORT instead of A-ASSOCIATE-AC", rq_then(h.abort(0, 0)), (), 7, "A-ABORT from the peer (service user)"),
    Case("provider A-ABORT: unrecognized PDU", rq_then(h.abort(2, 1)), (), 7, "unrecognized PDU"),
    Case("no presentation context accepted", lambda conn: (h.accept(conn, accept_contexts=False), h.stall(5)),
         (), 6, "every presentation context was refused"),
    Case("C-ECHO-RSP for another message ID", echo_then(lambda rq: echo_rsp(rq, message_id=rq.message_id + 7)),
         (), 7, "answers message"),
    Case("C-ECHO-RSP without status",
         echo_then(lambda rq: h.p_data(rq.context_id, 3, h.response(0x8030, rq.message_id, None))), (), 7,
         "without a status"),
    Case("unknown status code", echo_then(lambda rq: echo_rsp(rq, status=0x1234)), (), 1, "unknown status code"),
    Case("no C-ECHO-RSP", lambda conn: (h.accept(conn), h.read_request(conn), h.stall(20)),
         ("--dimse-timeout", "1.5"), 5, "no C-ECHO response within 1.5 s"),
    Case("response on a context never accepted", echo_then(lambda rq: echo_rsp(rq, context_id=99)), (), 7,
         "never accepted"),
    Case("A-ABORT instead of C-ECHO-RSP", echo_then(lambda rq: h.abort(0, 0)), (), 7, "A-ABORT"),
    Case("connection closed instead of C-ECHO-RSP", lambda conn: (h.accept(conn), h.read_request(conn),
                                                                  conn.close()), (), 7, "closed the connection"),
    Case("malformed P-DATA-TF", echo_then(lambda rq: struct.pack(">BBL", 4, 0, 6) + struct.pack(">LBB", 0, 1, 3)),
         (), 7, "malformed P-DATA-TF"),
    Case("P-DATA larger than the agreed maximum",
         echo_then(lambda rq: struct.pack(">BBL", 4, 0, 3 << 20)), (), 7, "more than the", 5),
    Case("garbage command set", echo_then(lambda rq: h.p_data(rq.context_id, 3, b"\x01\x02garbage")), (), 7,
         "association", 10),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_echo_against_misbehaving_peer(case):
    with h.HostilePeer(case.script) as peer:
        started = time.monotonic()
        result = run_dicomscu("127.0.0.1", str(peer.port), "--timeout", "10", *case.args, timeout=60)
        elapsed = time.monotonic() - started
        assert not peer.errors, peer.errors
    assert_clean_failure(result, case.code, case.message)
    assert elapsed < case.seconds, elapsed


def assert_clean_failure(result, code: int, message: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == code, (result.returncode, output)
    assert "Traceback" not in output and "Exception in thread" not in output, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("dicomscu: error:")]
    assert errors, output
    assert any(message in line for line in errors), (message, errors)


# -- C-STORE ------------------------------------------------------------------------


def store_peer(on_request):
    """Accept everything; for each C-STORE-RQ call on_request(conn, request, index)."""
    def script(conn):
        h.accept(conn)
        index = 0
        while True:
            request = h.read_request(conn)
            on_request(conn, request, index)
            index += 1
    return script


def store_rsp(conn, request, status=0):
    conn.sendall(h.p_data(request.context_id, 3, h.response(0x8001, request.message_id, status, SC)))


@pytest.fixture(scope="module")
def small_files(dataset_dir):
    return sorted(str(p) for p in (dataset_dir / "small").iterdir())[:4]


def run_store(peer, files, *extra):
    return run_dicomscu("--store", "127.0.0.1", str(peer.port), "--timeout", "5", *extra, *files, timeout=60)


def test_store_abort_during_data_stream(small_files):
    def on_request(conn, request, index):
        if index == 1:
            conn.sendall(h.abort(0, 0))
            h.stall(5)
        store_rsp(conn, request)

    with h.HostilePeer(store_peer(on_request)) as peer:
        result = run_store(peer, small_files)
    assert_clean_failure(result, 7, "A-ABORT")
    # the file in flight fails; the next goes over a new association (which aborts at its 2nd file too)
    assert "2 of 4 file(s) stored" in result.stdout and "2 failed" in result.stdout
    assert "with this file in flight" in result.stderr


def test_store_failure_status_decoded(small_files):
    with h.HostilePeer(store_peer(lambda conn, rq, i: store_rsp(conn, rq, 0xA7F3))) as peer:
        result = run_store(peer, small_files[:1])
    assert result.returncode == 1
    assert "0xA7F3 failure: Refused: Out of Resources" in result.stderr


def test_store_wrong_message_id(small_files):
    def on_request(conn, request, index):
        conn.sendall(h.p_data(request.context_id, 3, h.response(0x8001, request.message_id + 1, 0, SC)))

    with h.HostilePeer(store_peer(on_request)) as peer:
        result = run_store(peer, small_files)
    assert_clean_failure(result, 7, "answers message")


def test_store_no_response_is_a_timeout(small_files):
    with h.HostilePeer(store_peer(lambda conn, rq, i: h.stall(20))) as peer:
        started = time.monotonic()
        result = run_store(peer, small_files, "--dimse-timeout", "1.5")
    assert_clean_failure(result, 5, "no C-STORE response within 1.5 s")
    assert time.monotonic() - started < 10


def test_store_refused_sop_class_reported_per_file(small_files, dataset_dir, tmp_path):
    """The peer accepts Secondary Capture only: the CT file fails, named, and the others go."""
    import shutil

    def script(conn):
        _, body = h.read_pdu(conn)
        rq = h.parse_rq(body)
        rq.contexts = {cid: v for cid, v in rq.contexts.items() if v[0] == SC}
        conn.sendall(h.associate_ac(rq))
        while True:
            store_rsp(conn, h.read_request(conn))

    ct = tmp_path / "ct.dcm"
    shutil.copy(sorted((dataset_dir / "big").iterdir())[0], ct)
    with h.HostilePeer(script) as peer:
        result = run_store(peer, [str(ct), *small_files])
    assert result.returncode == 1
    assert "ct.dcm: failed: the peer does not accept CT Image Storage" in result.stderr
    assert "4 of 5 file(s) stored" in result.stdout


# -- C-FIND -------------------------------------------------------------------------

FIND = "1.2.840.10008.5.1.4.1.2.1.1"


def find_peer(answers, final=0x0000, abort_after=None):
    """Answer a C-FIND with `answers` (encoded identifiers), then `final` (or an A-ABORT)."""
    def script(conn):
        h.accept(conn)
        request = h.read_request(conn)
        for index, identifier in enumerate(answers):
            if abort_after is not None and index == abort_after:
                conn.sendall(h.abort(0, 0))
                h.stall(5)
                return
            conn.sendall(h.p_data(request.context_id, 3, h.response(0x8020, request.message_id, 0xFF00, FIND,
                                                                    dataset=True)))
            conn.sendall(h.p_data(request.context_id, 2, identifier))
        conn.sendall(h.p_data(request.context_id, 3, h.response(0x8020, request.message_id, final, FIND)))
        h.serve_release(conn)
    return script


def identifier(patient_id: str) -> bytes:
    value = patient_id.encode().ljust(8)
    return (struct.pack("<HHL", 0x0008, 0x0052, 8) + b"PATIENT " + struct.pack("<HHL", 0x0010, 0x0020, 8) + value)


def run_find(peer, *extra):
    return run_dicomscu("--find", "127.0.0.1", str(peer.port), "--timeout", "5", "-k", "10,20", "--format", "json",
                        *extra, timeout=60)


def test_find_abort_mid_stream_keeps_valid_json():
    with h.HostilePeer(find_peer([identifier(f"P{i}") for i in range(5)], abort_after=3)) as peer:
        result = run_find(peer)
    assert_clean_failure(result, 7, "A-ABORT")
    assert [a["00100020"]["Value"][0] for a in json.loads(result.stdout)] == ["P0", "P1", "P2"]


def test_find_garbage_identifier():
    with h.HostilePeer(find_peer([b"\x10\x00\x20\x00\xff\xff\xff\x7fgarbage"])) as peer:
        result = run_find(peer)
    assert_clean_failure(result, 1, "could not be decoded")


@pytest.mark.parametrize("status, text", [(0xA700, "Refused: Out of Resources"), (0xC123, "Unable to Process"),
                                          (0xA900, "Identifier Does Not Match SOP Class")])
def test_find_failure_statuses(status, text):
    with h.HostilePeer(find_peer([identifier("P1")], final=status)) as peer:
        result = run_find(peer)
    assert_clean_failure(result, 1, text)
    assert len(json.loads(result.stdout)) == 1


# -- C-GET --------------------------------------------------------------------------


def test_get_abort_during_sub_operation_leaves_no_partial_file(tmp_path, small_files):
    """The peer sends half of a C-STORE-RQ's data set, then aborts."""
    data = Path(small_files[0]).read_bytes()[400:1400]

    def script(conn):
        rq = h.accept(conn)
        request = h.read_request(conn)
        store_cx = next(cid for cid, (abstract, _) in rq.contexts.items() if abstract == SC)
        store = h.command(sorted([(0x0002, h._uid(SC)), (0x0100, h.us(0x0001)), (0x0110, h.us(1)),
                                  (0x0700, h.us(0)), (0x0800, h.us(0)), (0x1000, h._uid("1.2.3.4"))]))
        conn.sendall(h.p_data(store_cx, 3, store))
        conn.sendall(h.p_data(store_cx, 0, data))  # not the last fragment
        conn.sendall(h.abort(0, 0))
        h.stall(5)
        del request

    with h.HostilePeer(script) as peer:
        result = run_dicomscu("--get", "--patient", "127.0.0.1", str(peer.port), "-k", "10,20=X", "-o",
                              str(tmp_path), "--timeout", "5", timeout=60)
    assert_clean_failure(result, 7, "A-ABORT")
    assert list(tmp_path.iterdir()) == []


def test_reliability_doc_lists_every_case():
    """docs/reliability.md documents every case here (names and count)."""
    text = (ROOT / "docs" / "reliability.md").read_text()
    names = [c.name for c in CASES] + [name for name in globals() if name.startswith("test_") and name not in (
        "test_echo_against_misbehaving_peer", "test_reliability_doc_lists_every_case")]
    missing = [name for name in names if name not in text]
    assert not missing, missing


if __name__ == "__main__":  # print the case names, for the document
    print("\n".join(c.name for c in CASES), file=sys.stdout)


# -- stopping: C-CANCEL ignored, Ctrl-C, SIGTERM ----------------------------------------


def endless_find_peer(conn):
    """Answers a C-FIND with pending matches for a minute, whatever we send (C-CANCEL included)."""
    h.accept(conn)
    request = h.read_request(conn)
    conn.settimeout(0.05)
    deadline = time.monotonic() + 60
    number = 0
    try:
        while time.monotonic() < deadline:
            conn.sendall(h.p_data(request.context_id, 3, h.response(0x8020, request.message_id, 0xFF00, FIND,
                                                                    dataset=True)))
            conn.sendall(h.p_data(request.context_id, 2, identifier(f"P{number % 1000}")))
            number += 1
            try:
                conn.recv(65536)  # read and ignore (a C-CANCEL-RQ among it)
            except socket.timeout:
                pass
    except OSError:
        return  # we aborted


def test_find_limit_against_a_peer_that_ignores_c_cancel_aborts_after_the_grace_period():
    started = time.monotonic()
    with h.HostilePeer(endless_find_peer) as peer:
        result = run_find(peer, "--limit", "5")
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)) == 5
    assert "ignored our C-CANCEL" in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 30  # a hang bound, not a timing claim (the grace is 5 s)


@pytest.mark.parametrize("signal_number, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                       (signal.SIGTERM, 143, "terminated")])
def test_find_stops_on_ctrl_c_and_sigterm_with_json_closed(signal_number, code, word):
    with h.HostilePeer(endless_find_peer) as peer:
        process = subprocess.Popen([sys.executable, "-m", "dicomscu", "--find", "127.0.0.1", str(peer.port),
                                    "--timeout", "5", "-k", "10,20", "--format", "json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)  # answers are flowing
        process.send_signal(signal_number)
        try:
            stdout, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
    assert process.returncode == code, stderr
    assert len(json.loads(stdout)) > 0  # the array is closed: valid JSON
    assert word in stderr and "Traceback" not in stderr


def flooding_find_peer(conn):
    """Answers a C-FIND as fast as it can for half a minute, whatever we send (C-CANCEL included)."""
    h.accept(conn)
    request = h.read_request(conn)
    deadline = time.monotonic() + 30
    number = 0
    try:
        while time.monotonic() < deadline:
            conn.sendall(h.p_data(request.context_id, 3, h.response(0x8020, request.message_id, 0xFF00, FIND,
                                                                    dataset=True))
                         + h.p_data(request.context_id, 2, identifier(f"P{number % 1000}")))
            number += 1
            conn.setblocking(False)
            try:
                conn.recv(65536)  # read and ignore (a C-CANCEL-RQ among it)
            except BlockingIOError:
                pass
            conn.setblocking(True)
    except OSError:
        return  # we aborted


def _handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM (Python does not by itself: dicomscu's launcher does)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True  # gone already
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


INTERRUPT_POINTS = [0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.7, 1.0, 1.5, 2.0,
                    3.0, 4.0, 5.0]


def _interrupt_at(point: float, signal_number: int) -> tuple:
    """Run a JSON --find against a peer that floods answers and ignores C-CANCEL; `point` s after the
    interpreter handed over to dicomscu (start-up included), send `signal_number`.  (exit status, seconds
    from the signal to the exit, stdout, stderr)."""
    with h.HostilePeer(flooding_find_peer) as peer:
        process = subprocess.Popen([sys.executable, "-m", "dicomscu", "--find", "127.0.0.1", str(peer.port),
                                    "--timeout", "5", "-k", "10,20", "--format", "json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            while not _handlers_installed(process.pid):
                time.sleep(0.001)
            time.sleep(point)
            process.send_signal(signal_number)
            sent = time.monotonic()
            stdout, stderr = process.communicate(timeout=30)
            return process.returncode, time.monotonic() - sent, stdout, stderr.decode()
        finally:
            process.kill()
            process.wait()


def test_ctrl_c_and_sigterm_at_twenty_moments_end_the_run_with_a_whole_json_document():
    """From start-up to mid-flood: exit 130/143, within 2 s (or the C-CANCEL grace: the peer ignores it),
    no traceback, and stdout a whole JSON array (an empty one before the first answer)."""
    from concurrent.futures import ThreadPoolExecutor

    from dicomscu.operations.find import CANCEL_GRACE

    runs = [(point, signal.SIGINT if number % 2 == 0 else signal.SIGTERM)
            for number, point in enumerate(INTERRUPT_POINTS)]
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda run: _interrupt_at(*run), runs))
    for (point, signal_number), (code, seconds, stdout, stderr) in zip(runs, outcomes):
        where = f"{signal_number.name} at {point} s: exit {code} after {seconds:.2f} s; {stderr[-300:]!r}"
        assert code == (130 if signal_number == signal.SIGINT else 143), where
        assert "Traceback" not in stderr and ("interrupted" in stderr or "terminated" in stderr), where
        assert isinstance(json.loads(stdout), list), where
        assert seconds < CANCEL_GRACE + 5, where  # a bound on hanging, not a timing claim


# -- C-GET sub-operations that disagree with what was asked --------------------------------


def _encoded(template: Path, **values) -> bytes:
    """An Implicit VR LE data set: the template file with some values changed."""
    from pydicom import dcmread
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    ds = dcmread(template)
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    return buffer.getvalue()


def get_peer(sub_operations):
    """A C-GET SCP sending `sub_operations` ((command SOP Instance UID, data set bytes) each), then success.

    A C-FIND (our SOP class survey) is answered with no match."""
    def script(conn):
        rq = h.accept(conn)
        request = h.read_request(conn)
        if request.field == 0x0020:  # C-FIND: no match
            conn.sendall(h.p_data(request.context_id, 3, h.response(0x8020, request.message_id, 0x0000, FIND)))
            h.serve_release(conn)
            return
        store_cx = next(cid for cid, (abstract, _) in rq.contexts.items() if abstract == SC)
        for number, (uid, data) in enumerate(sub_operations, start=1):
            store = h.command(sorted([(0x0002, h._uid(SC)), (0x0100, h.us(0x0001)), (0x0110, h.us(number)),
                                      (0x0700, h.us(0)), (0x0800, h.us(0)), (0x1000, h._uid(uid))]))
            conn.sendall(h.p_data(store_cx, 3, store))
            conn.sendall(h.p_data(store_cx, 2, data))
            h.read_pdu(conn)  # our C-STORE-RSP (one P-DATA-TF)
        counts = [(0x1021, h.us(len(sub_operations))), (0x1022, h.us(0)), (0x1023, h.us(0))]
        conn.sendall(h.p_data(request.context_id, 3, h.response(0x8010, request.message_id, 0x0000,
                                                                "1.2.840.10008.5.1.4.1.2.2.3", extra=counts)))
        h.serve_release(conn)
    return script


def test_get_sub_operations_that_disagree_with_the_request_are_caught(tmp_path, small_files):
    from pydicom import dcmread

    original = dcmread(small_files[0])
    study = original.StudyInstanceUID
    other = "1.2.826.0.1.3680043.10.1137.77.1"
    sub_operations = [
        ("1.2.3.4.100", _encoded(small_files[0], SOPInstanceUID="1.2.3.4.101")),      # UID disagrees
        ("1.2.3.4.200", _encoded(small_files[0], SOPInstanceUID="1.2.3.4.200")),
        ("1.2.3.4.200", _encoded(small_files[0], SOPInstanceUID="1.2.3.4.200", PatientName="Other^One")),
        ("1.2.3.4.300", _encoded(small_files[0], SOPInstanceUID="1.2.3.4.300", StudyInstanceUID=other)),
    ]
    out = tmp_path / "out"
    with h.HostilePeer(get_peer(sub_operations)) as peer:
        result = run_dicomscu("--get", "--study", "--studyroot", "127.0.0.1", str(peer.port), "--timeout", "5",
                              "-k", f"StudyInstanceUID={study}", "-o", str(out), "--format", "json", timeout=60)
    document = json.loads(result.stdout)
    assert "renamed" in document, result.stderr
    assert (document["renamed"], document["conflicting"], document["outside"]) == (1, 1, 1), result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["1.2.3.4.101.dcm", "1.2.3.4.200.dcm", "1.2.3.4.300.dcm"]
    kept = dcmread(out / "1.2.3.4.200.dcm")
    assert kept.PatientName == original.PatientName  # the first of the two is kept
    assert dcmread(out / "1.2.3.4.101.dcm").file_meta.MediaStorageSOPInstanceUID == "1.2.3.4.101"
    assert "Traceback" not in result.stderr and "two different data sets" in result.stderr


def test_a_peer_that_releases_first_is_answered_quietly():
    """PS3.8 7.2.2: the acceptor may ask to release too (a collision if we ask at once): no noise, exit 0."""
    answers = []

    def script(conn):
        h.accept(conn)
        request = h.read_request(conn)
        conn.sendall(h.p_data(request.context_id, 3, h.response(0x8030, request.message_id, 0x0000)))
        conn.sendall(struct.pack(">BBLL", 0x05, 0, 4, 0))  # our own A-RELEASE-RQ
        try:
            conn.settimeout(5)
            pdu_type, _ = h.read_pdu(conn)
            answers.append(pdu_type)
            if pdu_type == 0x05:  # theirs crossed ours: answer it
                conn.sendall(h.release_rp())
                answers.append(h.read_pdu(conn)[0])
        except (ConnectionError, OSError):
            pass

    with h.HostilePeer(script) as peer:
        result = run_dicomscu("127.0.0.1", str(peer.port), "--timeout", "5", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Invalid event" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert answers and answers[0] in (0x05, 0x06)  # a release request of ours (collision) or our reply
