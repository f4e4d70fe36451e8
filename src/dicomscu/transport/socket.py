"""A pynetdicom AssociationSocket tuned for latency and bounded on every read.

Why this exists:

* DIMSE traffic is a ping-pong of small writes.  With Nagle's algorithm the
  second small write of a message waits for the ACK of the first, and the
  peer's delayed-ACK timer holds that ACK for ~40 ms: two stalls per message.
  ``TCP_NODELAY`` removes the first; re-arming ``TCP_QUICKACK`` after every
  receive (Linux clears it again by itself) removes the second.
* Stock pynetdicom clears the socket timeout after connecting, so a peer that
  sends a PDU header and then stalls keeps the reader in ``recv`` forever, and a
  header that declares a 4 GiB PDU makes it try to read (and buffer) 4 GiB.
  Here every read has a deadline and every PDU a size limit; the reason of a
  failure is kept in :attr:`TunedSocket.failure` so the operation can say it.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING

from pynetdicom import evt
from pynetdicom.transport import AssociationSocket, T_CONNECT

if TYPE_CHECKING:  # pragma: no cover
    from pynetdicom.association import Association
    from pynetdicom.transport import AddressInformation

_QUICKACK = getattr(socket, "TCP_QUICKACK", None)

#: Largest PDU body accepted when we advertised "no limit" (max PDU 0), and the
#: floor for association-phase PDUs, whatever limit was advertised.
HARD_PDU_LIMIT = 64 << 20
ASSOCIATION_PDU_FLOOR = 1 << 20
#: Bytes asked of the kernel per recv() call.
_READ_AHEAD = 256 * 1024
#: Buffers per sendmsg() call (Linux IOV_MAX is 1024).
_IOV_BATCH = 512


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


class TunedSocket(AssociationSocket):
    """AssociationSocket with TCP tuning, read deadlines and a PDU size limit."""

    def __init__(
        self,
        assoc: "Association",
        *,
        address: "AddressInformation | None" = None,
        client_socket: socket.socket | None = None,
        read_timeout: float,
        max_pdu: int,
    ) -> None:
        self.read_timeout = read_timeout
        self.pdu_limit = max(max_pdu, ASSOCIATION_PDU_FLOOR) if max_pdu else HARD_PDU_LIMIT
        #: Why the connection failed or was dropped, in words, or None.
        self.failure: str | None = None
        #: True when `failure` is a read that ran out of time (a timeout, not a protocol error).
        self.timed_out = False
        #: The OSError of a failed connect, kept for classification.
        self.connect_error: OSError | None = None
        #: Serializes writes of the reactor thread and of :meth:`send_buffers`.
        self.write_lock = threading.Lock()
        #: Bytes received and not yet consumed (see :meth:`recv`), and the reusable
        #: landing area of each recv_into() (no allocation per system call).
        self._buffer = bytearray()
        self._scratch = memoryview(bytearray(_READ_AHEAD))
        super().__init__(assoc, client_socket=client_socket, address=address)
        if client_socket is not None:
            tune(client_socket)
            client_socket.settimeout(read_timeout)

    def _create_socket(self, address: "AddressInformation") -> socket.socket:
        sock = super()._create_socket(address)
        tune(sock)
        return sock

    def connect(self, primitive: T_CONNECT) -> None:
        """Connect, remembering why it failed; reads keep a deadline afterwards."""
        sock = self.socket
        if sock is None:
            raise ValueError("a socket must be created before connecting")
        try:
            if self.tls_args:
                context, server_hostname = self.tls_args
                sock = context.wrap_socket(sock, server_side=False, server_hostname=server_hostname)
                self.socket = sock
            sock.settimeout(self.assoc.connection_timeout)
            sock.connect(primitive.address_info.as_tuple)
            sock.settimeout(self.read_timeout)
            tune(sock)
            self.assoc.requestor.address_info = type(primitive.address_info).from_tuple(sock.getsockname())
            self._is_connected = True
            evt.trigger(self.assoc, evt.EVT_CONN_OPEN, {"address": primitive.address_info.as_tuple})
            primitive.result = "Evt2"  # transport connection confirmed
        except OSError as exc:
            self.connect_error = exc
            self._shutdown_socket()
            self.socket = None
            primitive.result = "Evt17"  # transport connection closed
        finally:
            self.provider_queue.put(primitive)
            self._ready.set()

    def send(self, bytestream: bytes) -> None:
        with self.write_lock:
            super().send(bytestream)

    def send_buffers(self, buffers: list) -> None:
        """Write `buffers` in order with scatter-gather I/O; raise OSError if the connection fails.

        Used for P-DATA-TF PDUs encoded by :mod:`dicomscu.transport.dimse`: no copy of
        the payload, one system call for many PDUs.  Bounded by the read timeout
        (a peer that stops reading makes it raise ``socket.timeout``).
        """
        pending = [memoryview(b).cast("B") for b in buffers]
        with self.write_lock:
            sock = self.socket
            if sock is None:
                raise OSError("the connection is closed")
            if not hasattr(sock, "sendmsg") or isinstance(sock, ssl.SSLSocket):
                sock.sendall(b"".join(pending))  # TLS has no scatter-gather
                return
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

    def discard_buffer(self) -> None:
        """Forget read-ahead data (after a protocol error nothing more is read from this peer)."""
        self._buffer.clear()

    @property
    def ready(self) -> bool:
        """Data to read: already buffered, or waiting on the socket."""
        return bool(self._buffer) or super().ready

    def recv(self, nr_bytes: int) -> bytearray:
        """Read exactly `nr_bytes`, or fewer if the peer closed; never wait forever.

        Reads ahead into a buffer (up to 256 KiB per system call), so a burst of
        small PDUs, such as C-FIND responses, costs one ``recv`` instead of two per PDU.
        """
        if nr_bytes > self.pdu_limit:
            self.failure = (
                f"the peer announced a PDU of {nr_bytes} bytes, more than the {self.pdu_limit} "
                "this association accepts (broken or hostile peer)"
            )
            raise OSError(self.failure)
        buffer = self._buffer
        sock = self.socket
        deadline = time.monotonic() + self.read_timeout  # for the whole read, however the bytes trickle in
        dul = getattr(self.assoc, "dul", None)
        if dul is not None and dul.state_machine.current_state == "Sta2":  # acceptor awaiting A-ASSOCIATE-RQ
            deadline = min(deadline, time.monotonic() + max(dul.artim_timer.remaining, 0.0))  # ARTIM rules
        try:
            while len(buffer) < nr_bytes and sock is not None:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                received = sock.recv_into(self._scratch)
                if not received:
                    if buffer or nr_bytes != 6:  # a header was already read
                        self.failure = "the peer closed the connection in the middle of a PDU"
                    break
                buffer += self._scratch[:received]
                quickack(sock)
        except socket.timeout:
            self.timed_out = True
            self.failure = (
                f"the peer stopped sending in the middle of a PDU (not all of it within {self.read_timeout:g} s)"
            )
            raise
        finally:
            if sock is not None and self.read_timeout:
                sock.settimeout(self.read_timeout)  # sends keep their own bound
        data = buffer[:nr_bytes]
        del buffer[:nr_bytes]  # O(1) at the front of a bytearray
        return data
