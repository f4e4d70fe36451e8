"""Accepting associations: a listening socket, one thread per connection, each association bounded.

What a server open to a hospital network needs, and where it is done:

* the accept loop only accepts: the TLS handshake runs in the connection's own
  thread with a deadline (:data:`HANDSHAKE_TIMEOUT`), so one idle plain TCP
  connection to a TLS port keeps nobody else out;
* a connection must send its A-ASSOCIATE-RQ within ARTIM (:data:`ARTIM`, PS3.8
  9.1.5) and every PDU it starts within :data:`READ_TIMEOUT`, whole: idle sockets
  and slowloris peers are dropped;
* at most `max_associations` associations are established at once; one more is
  rejected with "local limit exceeded" (PS3.8 9.3.4), not queued;
* what an established association does is the `serve` callback's business; when
  the listener stops, :meth:`Listener.wait` gives them a grace period and aborts the rest.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from dicomscu.protocol import machine as m
from dicomscu.protocol import negotiation
from dicomscu.protocol import pdu as pdus
from dicomscu.protocol.pdu import ProtocolError
from dicomscu.transport.channel import Channel
from dicomscu.transport.link import Link, LinkFailed

LOGGER = logging.getLogger("dicomscu.transport")

#: A peer that takes longer than this to send the rest of a PDU is dropped (a whole-PDU deadline).
READ_TIMEOUT = 30.0
#: A connection has this long to complete its TLS handshake (in its own thread).
HANDSHAKE_TIMEOUT = 10.0
#: ARTIM (PS3.8 9.1.5): a connection that has not sent its A-ASSOCIATE-RQ within this long is dropped.
ARTIM = 10.0
#: Stopping waits this long for associations to end before saying so (a peer's A-RELEASE after its last
#: C-STORE of a C-MOVE is routine, not worth a warning).
QUIET_WAIT = 1.0
#: The maximum length we advertise for the PDUs we receive.
MAX_PDU = 1 << 20


@dataclass(frozen=True)
class AcceptPolicy:
    """Whom we accept and what we support."""

    ae_title: str
    #: abstract syntax -> the transfer syntaxes we accept for it.
    supported: Mapping[str, Sequence[str]]
    #: SOP classes on which the requestor may take the roles it asks for (C-GET's storage SCP role).
    roles_allowed: frozenset[str] = frozenset()
    #: Calling AE titles accepted (empty: any).
    require_calling: tuple[str, ...] = ()
    max_associations: int = 32
    max_pdu: int = MAX_PDU
    #: Received data sets larger than this are dropped as they arrive and flagged (refuse them).
    max_dataset: int | None = None
    #: How long an established association may stay silent before we abort it.
    idle_timeout: float = 60.0
    #: Operations a requestor may have outstanding, when it proposes an asynchronous operations window.
    window: int = 1


def rejection(request: pdus.AssociateRQ, policy: AcceptPolicy, established: int) -> pdus.AssociateRJ | None:
    """Why `request` is rejected (PS3.8 Table 9-21), or None to accept it."""
    if request.protocol_version & 1 == 0:
        return pdus.AssociateRJ(1, 2, 2)  # protocol version not supported
    if request.application_context != pdus.APPLICATION_CONTEXT:
        return pdus.AssociateRJ(1, 1, 2)  # application context name not supported
    if policy.require_calling and request.calling_ae not in policy.require_calling:
        return pdus.AssociateRJ(1, 1, 3)  # calling AE title not recognized
    if established >= policy.max_associations:
        return pdus.AssociateRJ(2, 3, 2)  # transient: local limit exceeded
    return None


@dataclass
class Listener:
    """Listen on `address`; each established association goes to `serve(channel)` in its own thread."""

    address: tuple[str, int]
    policy: AcceptPolicy
    serve: Callable[[Channel], None]
    ssl_context: ssl.SSLContext | None = None
    #: Connections accepted (TCP) and associations established, for callers that tell the two apart.
    connections: int = 0
    established: int = 0
    _channels: set = field(default_factory=set)
    _threads: set = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _socket: socket.socket | None = None
    _accepting: threading.Thread | None = None

    def start(self) -> "Listener":
        """Bind and listen (raises OSError), then accept in a background thread."""
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(self.address)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True,
                                           name=f"listener-{self.address[1]}")
        self._accepting.start()
        return self

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1] if self._socket else self.address[1]

    def _accept_loop(self) -> None:
        sock = self._socket
        while sock is not None:
            try:
                client, peer_address = sock.accept()
            except OSError:  # closed by stop()
                return
            self.take(client, peer_address)

    def take(self, client: socket.socket, peer_address) -> None:
        """Serve one connected socket in a thread of its own (an accepted connection, or the far end of a
        socket pair: :mod:`dicomscu.transport.memory`)."""
        with self._lock:
            self.connections += 1
        thread = threading.Thread(target=self._connection, args=(client, peer_address), daemon=True,
                                  name=f"association-{peer_address[0]}:{peer_address[1]}")
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def stop(self) -> None:
        """Stop accepting (associations under way go on; see :meth:`wait`)."""
        sock, self._socket = self._socket, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the loop
            except OSError:
                pass
            sock.close()
        if self._accepting is not None:
            self._accepting.join(timeout=5)

    def wait(self, grace: float) -> None:
        """Let the associations under way finish within `grace` s, then abort the rest, and join."""
        started = time.monotonic()
        deadline = started + grace
        said = False
        while time.monotonic() < deadline:
            with self._lock:
                busy = len(self._channels)
            if not busy:
                break
            if not said and time.monotonic() - started >= QUIET_WAIT:  # not an association's ordinary release
                LOGGER.warning("stopping: waiting up to %g s for %d association(s) to finish", grace, busy)
                said = True
            time.sleep(0.02)
        with self._lock:
            channels = list(self._channels)
            threads = list(self._threads)
        for channel in channels:
            LOGGER.warning("stopping: aborting the association with %s", channel)
            channel.abort()
        for thread in threads:
            thread.join(timeout=2)

    # -- one connection --------------------------------------------------------------------------------
    def _connection(self, sock: socket.socket, peer_address) -> None:
        where = f"{peer_address[0]}:{peer_address[1]}"
        try:
            secured = self._handshake(sock, where)
            if secured is not None:
                self._associate(secured, where)
        except Exception:  # a bug must cost one association, never the server
            LOGGER.exception("association with %s failed", where)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _handshake(self, sock: socket.socket, where: str) -> socket.socket | None:
        if self.ssl_context is None:
            return sock
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT)
            return self.ssl_context.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            LOGGER.warning("TLS handshake with %s failed: %s", where, exc)
            sock.close()
            return None

    def _associate(self, sock: socket.socket, where: str) -> None:
        policy = self.policy
        link = Link(sock, m.Association(m.ACCEPTOR, policy.max_pdu, policy.max_dataset), READ_TIMEOUT)
        try:
            event = link.next_event(ARTIM)
        except (LinkFailed, ProtocolError) as exc:
            LOGGER.warning("connection from %s dropped: %s", where, exc)
            link.protocol_error() if isinstance(exc, ProtocolError) else link.close()
            return
        if not isinstance(event, m.AssociationRequested):
            if event is None:
                LOGGER.warning("connection from %s dropped: no association request within %g s (ARTIM)",
                               where, ARTIM)
            link.close()
            return
        request = event.request
        with self._lock:
            refusal = rejection(request, policy, self.established)
            if refusal is None:
                self.established += 1
        if refusal is not None:
            LOGGER.warning("association from %s (%s) rejected: result %d, source %d, reason %d", where,
                           request.calling_ae, refusal.result, refusal.source, refusal.reason)
            try:
                link.send(link.core.reject(refusal))
                link.next_event(ARTIM)  # the requestor closes (Sta13); bounded by ARTIM
            except (LinkFailed, ProtocolError):
                pass
            link.close()
            return
        try:
            accept = negotiation.answer(request, policy.supported, policy.max_pdu, policy.roles_allowed,
                                        policy.window)
            link.send(link.core.accept(accept))
            accepted, refused = negotiation.agreed(request, accept)
            channel = Channel(link, accepted, name=f"{request.calling_ae}@{where}", dimse_timeout=policy.idle_timeout,
                              refused=refused, roles=negotiation.requestor_roles(request, accept),
                              window=negotiation.window(request, accept))
            with self._lock:
                self._channels.add(channel)
            LOGGER.info("association from %s established: %d of %d contexts accepted", channel, len(accepted),
                        len(request.contexts))
            try:
                self.serve(channel)
            finally:
                with self._lock:
                    self._channels.discard(channel)
        except LinkFailed as exc:
            LOGGER.warning("association from %s ended: %s", where, exc)
        finally:
            with self._lock:
                self.established -= 1
            link.close()
