"""An event-driven DICOM upper-layer reactor for pynetdicom.

pynetdicom's reactor thread polls: when it has nothing to do it sleeps
``_run_loop_delay`` (1 ms) and checks the socket and its queues again.  Each
DIMSE exchange crosses that thread several times (every outgoing P-DATA
fragment, every incoming PDU), so a C-STORE of a small file spends more time
waiting for the reactor to wake up than doing anything.

This reactor runs the same state machine and the same queues, but when idle it
blocks in ``select`` on the association socket *and* a wake-up socketpair that
:meth:`send_pdu` and :meth:`kill_dul` write to.  Work is picked up the moment it
arrives; an idle association costs no CPU.  A short select timeout still lets
the ARTIM timer and the kill flag be checked.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import struct
from typing import TYPE_CHECKING

from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ, A_RELEASE_RP
from pynetdicom.pdu_primitives import A_P_ABORT

from dicomscu.transport.dimse import parse_pdvs

if TYPE_CHECKING:  # pragma: no cover
    from pynetdicom.association import Association

LOGGER = logging.getLogger("dicomscu.transport")

#: Longest a blocked reactor sleeps before re-checking timers and the kill flag.
IDLE_TICK = 0.05
#: DIMSE messages received but not yet taken by their consumer, past which the reactor stops reading the
#: socket: a consumer slowed by its output (a pipe to a slow reader) slows the peer through TCP, instead
#: of every answer piling up in memory.
BACKLOG = 256


class EventDrivenDUL(DULServiceProvider):
    """DULServiceProvider whose reactor sleeps in select() instead of polling."""

    def __init__(self, assoc: "Association") -> None:
        super().__init__(assoc)
        self._wake_rx, self._wake_tx = socket.socketpair()
        self._wake_rx.setblocking(False)
        self._wake_tx.setblocking(False)
        #: The A-ABORT PDU the peer sent, if any (source and reason for messages).
        self.received_abort: A_ABORT_RQ | None = None
        #: (result, source, reason) of the A-ASSOCIATE-RJ the peer sent, if any.
        self.received_reject: tuple[int, int, int] | None = None
        #: Where the PDV items of P-DATA-TF PDUs received in Sta6 go, bypassing the
        #: state machine (whose action there, DT-2, only hands them to DIMSE).
        self.pdata_sink = None

    def _read_pdu_data(self) -> None:
        """Read one PDU; P-DATA-TF in Sta6 goes straight to :attr:`pdata_sink`.

        Everything else follows pynetdicom's path: decode, queue the event for the
        state machine.  Malformed PDUs are Evt19 (the state machine aborts), a
        broken connection Evt17.
        """
        sock = self.socket
        try:
            header = sock.recv(6)
            if len(header) < 6:
                self.event_queue.put("Evt17")
                return
            pdu_type, _, length = struct.unpack(">BBL", header)
            if not 0x01 <= pdu_type <= 0x07:
                self._protocol_error(f"the peer sent an unknown PDU type 0x{pdu_type:02X}")
                return
            body = sock.recv(length)
        except OSError:  # includes timeouts; the socket keeps the reason
            self.event_queue.put("Evt17")
            return
        if len(body) != length:
            self.event_queue.put("Evt17")
            return
        if pdu_type == 0x03 and length >= 4:  # keep the raw A-ASSOCIATE-RJ, whatever pynetdicom makes of it
            self.received_reject = (body[1], body[2], body[3])
        if pdu_type == 0x04 and self.pdata_sink is not None and self.state_machine.current_state == "Sta6":
            items = parse_pdvs(body)
            if items is None:
                self._protocol_error("the peer sent a malformed P-DATA-TF PDU")
                return
            self.pdata_sink(items)
            return
        try:
            pdu, event = self._decode_pdu(header + body)
        except Exception as exc:
            self._protocol_error(f"the peer sent a malformed PDU of type 0x{pdu_type:02X} ({exc})")
            return
        self.event_queue.put(event)
        self._recv_pdu.put(pdu)

    def _protocol_error(self, reason: str) -> None:
        """Record why, then let the state machine abort (Evt19: invalid PDU)."""
        LOGGER.error("%s: aborting the association", reason)
        if self.socket is not None:
            if not getattr(self.socket, "failure", None):
                self.socket.failure = f"{reason} (protocol error)"
            discard = getattr(self.socket, "discard_buffer", None)
            if discard is not None:
                discard()  # the rest of the stream cannot be trusted, nor waited for
        self.event_queue.put("Evt19")
        self.assoc.dimse.msg_queue.put((None, None))  # pynetdicom's AA-8 does not wake a DIMSE wait

    def _decode_pdu(self, bytestream):
        pdu, event = super()._decode_pdu(bytestream)
        if isinstance(pdu, A_ABORT_RQ):
            self.received_abort = pdu
        return pdu, event

    # Anything that gives the reactor work must wake it up.
    def send_pdu(self, primitive) -> None:  # type: ignore[override]
        super().send_pdu(primitive)
        self._wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_tx.send(b"\0")
        except OSError:  # buffer full (already awake) or reactor gone: nothing to do
            return

    def _backlogged(self) -> bool:
        return self.assoc.dimse.msg_queue.qsize() >= BACKLOG

    def _is_transport_event(self) -> bool:
        if self._backlogged():
            return False  # leave the data in the kernel: TCP pushes back on the peer
        return super()._is_transport_event()

    def _wait_for_work(self) -> None:
        backlogged = self._backlogged()
        if self.socket is not None and self.socket.ready and not backlogged:
            return  # read-ahead data is waiting in the socket's buffer, not in the kernel
        waitables: list = [self._wake_rx]
        raw = self.socket.socket if self.socket is not None else None
        if raw is not None and self.socket._is_connected and not backlogged:
            waitables.append(raw)
        try:
            readable, _, _ = select.select(waitables, [], [], IDLE_TICK)
        except (OSError, ValueError):
            return  # socket closed under us: the next loop sees it
        if self._wake_rx in readable:
            try:
                while self._wake_rx.recv(4096):
                    continue
            except OSError:  # drained (EWOULDBLOCK)
                return

    def run_reactor(self) -> None:
        """Same steps as pynetdicom's reactor; idle waits block on I/O instead of sleeping."""
        self._idle_timer.start()
        try:
            while True:
                if not self.assoc._dul_ready.is_set():
                    self.assoc._dul_ready.set()
                if self._kill_thread:
                    break
                if self.artim_timer.expired:
                    self.event_queue.put("Evt18")
                try:
                    if self._process_recv_primitive():
                        pass
                    elif self._is_transport_event():
                        self._idle_timer.restart()
                except Exception as exc:  # a bug or a hostile PDU: abort, never hang
                    LOGGER.error("upper-layer failure, aborting the association: %s", exc)
                    self._abort_after_failure(f"upper-layer failure ({exc})")
                    return
                try:
                    event = self.event_queue.get(block=False)
                except queue.Empty:
                    self._wait_for_work()
                    continue
                if event == "Evt11" and self.state_machine.current_state == "Sta8":
                    # The peer's A-RELEASE-RQ arrived just before ours could leave (PS3.8 7.2.2): ours is
                    # moot; answer theirs (the table has no transition for this, pynetdicom raises).
                    LOGGER.debug("the peer asked to release first: answering its request")
                    self._end(A_RELEASE_RP(), "the association was released by the peer")
                    return
                if event == "Evt14" and self.state_machine.current_state == "Sta13":
                    LOGGER.debug("the peer's release request was answered already")  # two answers raced
                    self._drop_local_primitive()
                    continue
                try:
                    self.state_machine.do_action(event)
                except Exception as exc:  # pynetdicom choked on what the peer sent: abort, never hang
                    LOGGER.error("upper-layer failure, aborting the association: %s", exc)
                    self._abort_after_failure(f"the peer sent something the upper layer cannot handle ({exc})")
                    return
        finally:
            self._wake_rx.close()
            self._wake_tx.close()

    def _drop_local_primitive(self) -> None:
        """Remove the user's primitive whose event is being ignored (its action would have taken it)."""
        try:
            self.to_provider_queue.get(block=False)
        except queue.Empty:
            pass

    def _abort_after_failure(self, reason: str) -> None:
        """Send an A-ABORT, close, and wake whoever waits (ACSE or DIMSE) with the reason recorded."""
        abort = A_ABORT_RQ()
        abort.source = 0x02
        abort.reason_diagnostic = 0x00
        self._end(abort, reason)

    def _end(self, last_pdu, reason: str) -> None:
        """Send `last_pdu`, close, and wake whoever waits (ACSE or DIMSE), the association over."""
        try:
            if self.socket is not None:
                if not getattr(self.socket, "failure", None):
                    self.socket.failure = reason
                self.socket.send(last_pdu.encode())
                self.socket.close()
        except Exception:  # the connection may already be gone
            LOGGER.debug("could not send the last PDU", exc_info=True)
        finally:
            assoc = self.assoc
            assoc.is_aborted = True
            assoc.is_established = False
            assoc._kill = True
            indication = A_P_ABORT()
            indication.provider_reason = 0x00
            self.to_user_queue.put(indication)  # wakes an ACSE wait
            assoc.dimse.msg_queue.put((None, None))  # wakes a DIMSE wait
            self._kill_thread = True
