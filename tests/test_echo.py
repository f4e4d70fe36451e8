"""C-ECHO against real peers, and every way it can fail: one line, distinct exit code, no hang."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

import dicomscu
from dicomscu import Peer, Timeouts

from conftest import run_dicomscu
from peers import free_port, silent_listener


def assert_one_line_error(result, code: int, *fragments: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("dicomscu: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_echo_storescp(storescp):
    result = run_dicomscu("localhost", str(storescp.port), "--call", storescp.aetitle)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"C-ECHO STORESCP@localhost:{storescp.port}: success")
    assert len(result.stdout.splitlines()) == 1


def test_echo_orthanc(orthanc):
    result = run_dicomscu("--echo", "127.0.0.1", str(orthanc.dicom_port), "--call", orthanc.aetitle)
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout


def test_echo_api_returns_status(storescp):
    result = dicomscu.echo(Peer("127.0.0.1", storescp.port))
    assert result.status.ok and result.status.code == 0 and result.seconds < 5


def test_connection_refused():
    port = free_port()
    result = run_dicomscu("127.0.0.1", str(port))
    assert_one_line_error(result, 3, "connection refused", f"127.0.0.1:{port}")


def test_unknown_host():
    result = run_dicomscu("no-such-host.invalid", "11112")
    assert_one_line_error(result, 4, "unknown host 'no-such-host.invalid'")


def test_orthanc_rejects_wrong_called_ae(orthanc):
    result = run_dicomscu("127.0.0.1", str(orthanc.dicom_port), "--call", "WRONG_AE")
    assert_one_line_error(result, 6, "association rejected", "called AE title not recognized", "--call")


def test_transient_rejection_is_decoded():
    """A pynetdicom SCP at its association limit rejects (transient): local limit exceeded."""
    ae = AE(ae_title="BUSY")
    ae.add_supported_context(Verification)
    ae.maximum_associations = 1
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False)
    holder = AE()
    holder.add_requested_context(Verification)
    held = holder.associate("127.0.0.1", port)
    try:
        assert held.is_established
        result = run_dicomscu("127.0.0.1", str(port))
    finally:
        held.release()
        server.shutdown()
    assert_one_line_error(result, 6, "association rejected (transient)", "local limit exceeded")


@pytest.fixture
def picky_scp():
    """A pynetdicom SCP that only accepts calling AE 'FRIEND' (rejects others: calling AE not recognized)."""
    ae = AE(ae_title="PICKY")
    ae.add_supported_context(Verification)
    ae.require_calling_aet = ["FRIEND"]
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False)
    yield port
    server.shutdown()


def test_calling_ae_rejection_is_decoded(picky_scp):
    result = run_dicomscu("127.0.0.1", str(picky_scp), "--aetitle", "STRANGER")
    assert_one_line_error(result, 6, "calling AE title not recognized", "--aetitle")
    ok = run_dicomscu("127.0.0.1", str(picky_scp), "--aetitle", "FRIEND")
    assert ok.returncode == 0, ok.stderr


def test_silent_server_association_timeout():
    with silent_listener() as port:
        started = time.monotonic()
        result = run_dicomscu("127.0.0.1", str(port), "--acse-timeout", "1.5")
        elapsed = time.monotonic() - started
    assert_one_line_error(result, 5, "association timeout")
    assert elapsed < 10


def test_connect_timeout_on_full_backlog():
    """A listener whose accept queue is full drops SYNs: the connect itself times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.2)
    try:
        started = time.monotonic()
        with pytest.raises(dicomscu.PeerTimeout, match="connect timeout"):
            dicomscu.echo(Peer("127.0.0.1", port, timeouts=Timeouts(connect=1, association=5)))
        assert time.monotonic() - started < 5
    finally:
        for s in fillers:
            s.close()
        server.close()


def test_server_closes_right_after_connect():
    with silent_listener(script=lambda conn: conn.close()) as port:
        result = run_dicomscu("127.0.0.1", str(port), "--timeout", "5")
    assert_one_line_error(result, 7, "closed the connection")


def answer_then_stall(reply: bytes, timeout: str):
    """Run an echo against a peer that reads the A-ASSOCIATE-RQ, sends `reply`, then goes silent."""
    def script(conn):
        conn.recv(65536)
        conn.sendall(reply)
        time.sleep(30)

    with silent_listener(script=script) as port:
        started = time.monotonic()
        result = run_dicomscu("127.0.0.1", str(port), "--timeout", timeout)
        return result, time.monotonic() - started


def test_half_pdu_then_stall_is_bounded():
    """A header announcing 100 bytes, 10 sent, then silence: a read timeout, not a hang."""
    result, elapsed = answer_then_stall(struct.pack(">BBL", 0x02, 0, 100) + b"\0" * 10, "1.5")
    assert_one_line_error(result, 5, "stopped sending in the middle of a PDU")
    assert elapsed < 10


def test_huge_pdu_length_is_refused_without_allocating():
    """A-ASSOCIATE-AC announcing 4 GiB: refused at once, never read or buffered."""
    result, elapsed = answer_then_stall(struct.pack(">BBL", 0x02, 0, 0xFFFFFFFF) + b"\0" * 64, "10")
    assert_one_line_error(result, 7, "4294967295 bytes")
    assert elapsed < 5


def test_abort_during_association():
    """The peer answers the A-ASSOCIATE-RQ with an A-ABORT."""
    def script(conn):
        conn.recv(65536)
        conn.sendall(bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 0]))  # A-ABORT, source 2 (provider)
        time.sleep(2)

    with silent_listener(script=script) as port:
        result = run_dicomscu("127.0.0.1", str(port), "--timeout", "5")
    assert_one_line_error(result, 7, "A-ABORT")


def test_no_thread_leak_after_failures():
    before = threading.active_count()
    for _ in range(5):
        with pytest.raises(dicomscu.ConnectionFailed):
            dicomscu.echo(Peer("127.0.0.1", free_port()))
    time.sleep(0.2)
    assert threading.active_count() <= before + 1
