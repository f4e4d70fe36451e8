"""The one socket driver: a connected socket feeding a protocol core, for requestor and acceptor alike.

Why it looks the way it does:

* DIMSE traffic is a ping-pong of small writes.  With Nagle's algorithm the
  second small write of a message waits for the ACK of the first, and the peer's
  delayed-ACK timer holds that ACK for ~40 ms: two stalls per message.
  ``TCP_NODELAY`` removes the first; re-arming ``TCP_QUICKACK`` after every
  receive (Linux clears it again by itself) removes the second.
* Every wait is bounded.  Waiting for the next PDU is bounded by the caller's
  timeout (DIMSE, ARTIM, idle); once a PDU has started, all of it must arrive
  within the network timeout, however slowly its bytes trickle in (a slowloris
  is dropped like a silent peer).  No thread and no polling: the calling thread
  blocks in ``recv`` with a deadline.
* Writes are scatter-gather (``sendmsg``) straight from the caller's buffers, so
  a data set is never copied on its way out; TLS has no scatter-gather and joins.
"""

from __future__ import annotations

import socket
import sys
import time

from dicomscu.protocol.machine import NEED_DATA, Association
from dicomscu.transport import interrupts

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
#: Bytes asked of the kernel per recv() call.
READ_AHEAD = 256 * 1024
#: Buffers per sendmsg() call (Linux IOV_MAX is 1024).
_IOV_BATCH = 512


def _ssl():
    """The ssl module if anything loaded it (a TLS socket exists only then): plain TCP never imports it."""
    return sys.modules.get("ssl")


def _is_tls(sock: socket.socket) -> bool:
    ssl = _ssl()
    return ssl is not None and isinstance(sock, ssl.SSLSocket)


def tune(sock: socket.socket) -> None:
    """Disable Nagle and ask for immediate ACKs (both best effort)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # pragma: no cover - not a TCP socket
        pass
    quickack(sock)


def quickack(sock: socket.socket) -> None:
    """Re-arm TCP_QUICKACK; the kernel drops back to delayed ACKs on its own."""
    if _QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:  # pragma: no cover
            pass


class LinkFailed(Exception):
    """The connection failed: `reason` in words; `timed_out` when a deadline passed."""

    def __init__(self, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


class Link:
    """`sock` (connected, tuned) driving `core`: events in, bytes out."""

    def __init__(self, sock: socket.socket, core: Association, network_timeout: float) -> None:
        self.sock = sock
        self.core = core
        self.network_timeout = network_timeout
        self._scratch = bytearray(READ_AHEAD)
        self._view = memoryview(self._scratch)
        self._closed = False
        tune(sock)

    # -- reading ---------------------------------------------------------------------------------------
    def next_event(self, wait: float):
        """The next event from the core, waiting at most `wait` s for a PDU to start; None if none did.

        Raises :class:`LinkFailed` when the connection fails or a started PDU is not
        whole within the network timeout, and ProtocolError when the peer breaks the
        protocol (then :meth:`abort`).
        """
        with interrupts.deferred():  # a Ctrl-C waits for a safe point: never between a read and the core
            return self._next_event(wait)

    def _next_event(self, wait: float):
        core = self.core
        wait_until = time.monotonic() + max(wait, 0.0)
        pdu_deadline = None
        while True:
            event = core.next_event()
            if event is not NEED_DATA:
                return event
            interrupts.check()  # nothing half-read: the core holds every byte received so far
            now = time.monotonic()
            if core.mid_pdu:
                pdu_deadline = pdu_deadline or now + self.network_timeout
                remaining, mid = pdu_deadline - now, True
            else:
                pdu_deadline = None
                remaining, mid = wait_until - now, False
            if remaining <= 0:
                if mid:
                    raise LinkFailed("the peer stopped sending in the middle of a PDU (not all of it within "
                                     f"{self.network_timeout:g} s)", timed_out=True)
                if wait > 0 or not self._ready_now():
                    return None
            if interrupts.deferring():
                remaining = min(remaining, interrupts.SLICE)
            received = self._recv(max(remaining, 0.0), mid)
            if received is None:
                continue
            core.receive_data(self._view[:received] if received else b"")

    def input_ready(self) -> bool:
        """Something to read now, without waiting: in the core, or on the connection."""
        return self.core.has_input or self._ready_now()

    def _ready_now(self) -> bool:
        """Non-blocking check for data (a zero wait: is there a C-CANCEL?)."""
        if _is_tls(self.sock) and self.sock.pending():  # type: ignore[attr-defined]
            return True
        import select

        try:
            return bool(select.select([self.sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True  # let the read find out what is wrong

    def _recv(self, seconds: float, mid: bool) -> int | None:
        """Bytes read into the scratch buffer (0: closed), or None when the wait ran out (checked by the caller)."""
        if self._closed:
            return 0
        try:
            self.sock.settimeout(max(seconds, 0.001))
            received = self.sock.recv_into(self._scratch)
        except (socket.timeout, BlockingIOError):
            return None
        except ConnectionResetError:
            return 0  # the peer closed the connection, abruptly: the same to the protocol
        except OSError as exc:
            ssl = _ssl()
            if ssl is not None and isinstance(exc, ssl.SSLWantReadError):
                return None  # a TLS record not whole yet
            if ssl is not None and isinstance(exc, ssl.SSLError):
                raise LinkFailed(f"TLS failure: {exc.reason or exc}") from None
            raise LinkFailed(f"connection lost: {exc.strerror or exc}") from None
        if received:
            quickack(self.sock)
        return received

    # -- writing ---------------------------------------------------------------------------------------
    def send(self, data) -> None:
        """Write `data` (bytes, or a list of buffers) whole; bounded by the network timeout."""
        if not data:
            return
        buffers = data if isinstance(data, list) else [data]
        sock = self.sock
        try:
            sock.settimeout(self.network_timeout)
            if _is_tls(sock) or not hasattr(sock, "sendmsg"):
                sock.sendall(b"".join(buffers))  # TLS has no scatter-gather
                return
            pending = [memoryview(b).cast("B") for b in buffers]
            while pending:
                sent = sock.sendmsg(pending[:_IOV_BATCH])
                while sent:
                    head = pending[0]
                    if sent >= len(head):
                        sent -= len(head)
                        pending.pop(0)
                    else:
                        pending[0] = head[sent:]
                        sent = 0
        except socket.timeout:
            raise LinkFailed(f"the peer stopped reading (nothing accepted for {self.network_timeout:g} s)",
                             timed_out=True) from None
        except OSError as exc:
            raise LinkFailed(f"connection lost while sending: {exc.strerror or exc}") from None

    # -- ending ----------------------------------------------------------------------------------------
    def abort(self, source: int = 0, reason: int = 0) -> None:
        """Send an A-ABORT (if the association is not over) and close; never raises."""
        try:
            self.send(self.core.abort(source, reason))
        except LinkFailed:
            pass
        self.close()

    def protocol_error(self) -> None:
        """AA-8: abort as the service provider after the peer broke the protocol."""
        self.abort(source=2, reason=0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.core.abandon()  # a data set half received goes (its partial file, if it had one)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
