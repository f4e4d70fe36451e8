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
from typing import TYPE_CHECKING

from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ

if TYPE_CHECKING:  # pragma: no cover
    from pynetdicom.association import Association

LOGGER = logging.getLogger("dicomscu.transport")

#: Longest a blocked reactor sleeps before re-checking timers and the kill flag.
IDLE_TICK = 0.05


class EventDrivenDUL(DULServiceProvider):
    """DULServiceProvider whose reactor sleeps in select() instead of polling."""

    def __init__(self, assoc: "Association") -> None:
        super().__init__(assoc)
        self._wake_rx, self._wake_tx = socket.socketpair()
        self._wake_rx.setblocking(False)
        self._wake_tx.setblocking(False)
        #: The A-ABORT PDU the peer sent, if any (source and reason for messages).
        self.received_abort: A_ABORT_RQ | None = None

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

    def _wait_for_work(self) -> None:
        waitables: list = [self._wake_rx]
        raw = self.socket.socket if self.socket is not None else None
        if raw is not None and self.socket._is_connected:
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
                    self._abort_after_failure()
                    return
                try:
                    event = self.event_queue.get(block=False)
                except queue.Empty:
                    self._wait_for_work()
                    continue
                self.state_machine.do_action(event)
        finally:
            self._wake_rx.close()
            self._wake_tx.close()

    def _abort_after_failure(self) -> None:
        abort = A_ABORT_RQ()
        abort.source = 0x02
        abort.reason_diagnostic = 0x00
        try:
            if self.socket is not None:
                self.socket.send(abort.encode())
        finally:
            assoc = self.assoc
            assoc.is_aborted = True
            assoc.is_established = False
            assoc._kill = True
            assoc.dimse.msg_queue.put((None, None))  # release a waiting DIMSE user
            self._kill_thread = True
