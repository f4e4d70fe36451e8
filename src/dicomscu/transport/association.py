"""Open, drive and close one association; turn every way it can fail into a clear error.

pynetdicom does the upper-layer protocol.  This module adds what a command-line
client needs on top of it:

* a tuned socket and an event-driven reactor (see :mod:`.socket`, :mod:`.dul`);
* name resolution up front, so "unknown host" is not reported as "aborted";
* failures classified from what actually happened (connect error, A-ASSOCIATE-RJ
  with its decoded reason, A-ABORT with its source, protocol violation, timeout);
* :class:`Channel`, through which the calling thread sends a DIMSE request and
  waits for its response directly, with the association's own reactor thread
  parked for the whole association (it would otherwise compete for responses and
  costs up to a millisecond of hand-over per message).
"""

from __future__ import annotations

import logging
import queue
import socket
import ssl
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

from pynetdicom import AE, evt
from pynetdicom.pdu_primitives import A_ABORT, A_ASSOCIATE, A_P_ABORT
from pynetdicom.presentation import PresentationContext

from dicomscu.errors import (
    AssociationAborted,
    AssociationRejected,
    ConnectionFailed,
    PeerTimeout,
    UnknownHost,
)
from dicomscu.transport.assembly import Assembler
from dicomscu.transport.dimse import p_data_tf, parse_response
from dicomscu.transport.dul import EventDrivenDUL
from dicomscu.transport.peer import Peer
from dicomscu.transport.socket import TunedSocket

LOGGER = logging.getLogger("dicomscu.transport")

#: PS3.8 Table 9-21: (result source, reason/diag.) of an A-ASSOCIATE-RJ.
REJECT_REASONS = {
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "calling AE title not recognized",
    (1, 7): "called AE title not recognized",
    (2, 1): "no reason given",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded",
}
REJECT_SOURCES = {
    1: "the service user",
    2: "the service provider (ACSE)",
    3: "the service provider (presentation)",
}
REJECT_HINTS = {
    (1, 3): "ask the PACS admin to register our AE title, or set it with --aetitle",
    (1, 7): "set the server's AE title with --call",
    (3, 1): "the server is busy: try again later",
    (3, 2): "the server has too many associations open: try again later",
}
#: PS3.8 Table 9-26: A-ABORT source and provider reasons.
ABORT_SOURCES = {0: "the peer (service user)", 1: "reserved source", 2: "the peer's upper layer (service provider)"}
ABORT_REASONS = {
    0: "reason not specified",
    1: "unrecognized PDU",
    2: "unexpected PDU",
    4: "unrecognized PDU parameter",
    5: "unexpected PDU parameter",
    6: "invalid PDU parameter value",
}


class TunedAE(AE):
    """An AE whose associations use :class:`TunedSocket` and :class:`EventDrivenDUL`."""

    def __init__(self, peer: Peer) -> None:
        super().__init__(ae_title=peer.calling_ae)
        self.connection_timeout = peer.timeouts.connect
        self.acse_timeout = peer.timeouts.association
        self.dimse_timeout = peer.timeouts.dimse
        self.network_timeout = None  # idle associations are ours to close
        self._peer = peer

    def _create_socket(self, assoc, address, tls_args):  # type: ignore[override]
        # Called by AE.associate() before the association starts its DUL thread:
        # the one place to put our reactor and socket in.
        assoc.dul = EventDrivenDUL(assoc)
        sock = TunedSocket(
            assoc, address=address, read_timeout=self._peer.timeouts.network, max_pdu=self._peer.max_pdu
        )
        sock.tls_args = tls_args
        return sock


@dataclass
class AcseLog:
    """What the peer said at the association level (plain data, filled by events)."""

    last: object | None = None

    def on_acse_recv(self, event) -> None:
        self.last = event.primitive


def resolve(host: str, port: int) -> str:
    """The IP address to connect to, or UnknownHost."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnknownHost(f"unknown host '{host}': {getattr(exc, 'strerror', None) or exc}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, as most PACS listen there
    return infos[0][4][0]


class Channel:
    """An established association, driven synchronously from the calling thread."""

    def __init__(self, assoc, peer: Peer, acse: AcseLog) -> None:
        self.assoc = assoc
        self.peer = peer
        self._acse = acse
        self._message_id = 0
        self._accepted_ids = {cx.context_id for cx in assoc.accepted_contexts}
        self._park_reactor()
        self._decode_simple_responses()

    # -- presentation contexts -------------------------------------------------
    @property
    def accepted(self) -> list[PresentationContext]:
        return list(self.assoc.accepted_contexts)

    @property
    def rejected(self) -> list[PresentationContext]:
        return list(self.assoc.rejected_contexts)

    @property
    def peer_max_pdu(self) -> int:
        return int(self.assoc.acceptor.maximum_length or 0)

    def context_for(self, abstract_syntax: str, transfer_syntax: str | None = None) -> PresentationContext | None:
        """The accepted context for `abstract_syntax` (with that transfer syntax, if given)."""
        for cx in self.assoc.accepted_contexts:
            if cx.abstract_syntax == abstract_syntax and (
                transfer_syntax is None or cx.transfer_syntax[0] == transfer_syntax
            ):
                return cx
        return None

    # -- DIMSE -----------------------------------------------------------------
    def next_message_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def send_encoded(self, context_id: int, command: bytes, dataset: bytes | None, what: str) -> None:
        """Send a message whose command set is already encoded (see :mod:`.dimse`).

        The PDUs are written from this thread, under the socket's write lock, while
        the association is established (state Sta6, where sending P-DATA-TF changes
        nothing in the state machine): what the reactor would do, minus the hand-over.
        """
        dul = self.assoc.dul
        if dul.state_machine.current_state != "Sta6":
            self._raise_lost(what, 0.0)
        try:
            dul.socket.send_buffers(p_data_tf(context_id, command, dataset, self.peer_max_pdu))
        except socket.timeout:
            self.abort()
            raise PeerTimeout(f"{self.peer}: the peer stopped reading our {what} request "
                              f"(nothing for {self.peer.timeouts.network:g} s)") from None
        except OSError as exc:
            self.abort()
            raise AssociationAborted(f"{self.peer}: connection lost while sending the {what} request: "
                                     f"{exc.strerror or exc}") from None

    def exchange(self, request, context_id: int, what: str):
        """Send `request` and return its response primitive; raise on abort or timeout."""
        self.assoc.dimse.send_msg(request, context_id)
        return self.receive(request.MessageID, what)

    def receive_any(self, what: str):
        """(context ID, message) of the next DIMSE message, request or response; bounded wait."""
        started = time.monotonic()
        context_id, message = self.assoc.dimse.get_msg(block=True)
        if message is None:
            self._raise_lost(what, time.monotonic() - started)
        if context_id not in self._accepted_ids:
            self.abort()
            raise AssociationAborted(f"{self.peer}: the peer sent a {what} message on presentation context "
                                     f"{context_id}, which was never accepted (protocol error)")
        return context_id, message

    def syntax_of(self, context_id: int):
        """Transfer syntax of the accepted presentation context `context_id`."""
        for cx in self.assoc.accepted_contexts:
            if cx.context_id == context_id:
                return cx.transfer_syntax[0]
        raise AssociationAborted(f"{self.peer}: the peer used presentation context {context_id}, "
                                 "which was never accepted (protocol error)")

    def receive(self, message_id: int, what: str):
        """Wait for the response to `message_id`; every wait is bounded by the DIMSE timeout."""
        _, rsp = self.receive_any(what)
        if getattr(rsp, "Status", None) is None:
            self.abort()
            raise AssociationAborted(f"{self.peer}: the peer sent {type(rsp).__name__} without a status "
                                     f"while we waited for the {what} response (protocol error)")
        responding_to = getattr(rsp, "MessageIDBeingRespondedTo", None)
        if responding_to != message_id:
            self.abort()
            raise AssociationAborted(
                f"{self.peer}: the {what} response answers message {responding_to}, not {message_id} "
                "(protocol error)"
            )
        return rsp

    def poll(self, seconds: float):
        """The next received message within `seconds`, or None (for draining after a cancel)."""
        if seconds <= 0:
            return None
        try:
            return self.assoc.dimse.msg_queue.get(timeout=seconds)[1]
        except queue.Empty:
            return None

    def _raise_lost(self, what: str, waited: float):
        reason = self._why_gone()
        if getattr(self.assoc.dul.socket, "timed_out", False):
            self.abort()
            raise PeerTimeout(f"{self.peer}: {reason} while waiting for the {what} response")
        if reason is None and waited >= self.peer.timeouts.dimse * 0.99:
            self.abort()
            raise PeerTimeout(
                f"{self.peer}: no {what} response within {self.peer.timeouts.dimse:g} s (DIMSE timeout)"
            )
        self.abort()
        raise AssociationAborted(f"{self.peer}: association lost while waiting for the {what} response: "
                                 f"{reason or 'the connection was closed'}")

    def _why_gone(self) -> str | None:
        dul = self.assoc.dul
        gone = (
            isinstance(dul.peek_next_pdu(), (A_ABORT, A_P_ABORT))
            or getattr(dul.socket, "failure", None)
            or not dul.is_alive()
            or self.assoc.is_aborted
        )
        return describe_abort(dul) if gone else None

    def _decode_simple_responses(self) -> None:
        """Decode the common responses ourselves (:func:`.dimse.parse_response`), see :mod:`.assembly`."""
        self.assoc.dul.pdata_sink = Assembler(self.assoc.dimse, parse_response)

    # -- lifetime --------------------------------------------------------------
    def _park_reactor(self) -> None:
        """Stop the association thread from taking our responses (see module doc)."""
        assoc = self.assoc
        assoc._reactor_checkpoint.clear()
        deadline = time.monotonic() + 5
        while not assoc._is_paused and assoc.is_alive() and time.monotonic() < deadline:
            time.sleep(0.0001)

    def _drain(self) -> None:
        """Drop messages nobody waits for, so that the association's own thread never serves them.

        pynetdicom restarts that thread to release; it would take any message still
        queued for a request of its own, and ours are not.
        """
        pending = self.assoc.dimse.msg_queue
        for _ in range(DRAIN_AT_MOST):  # bounded: a peer may keep sending while we drop its messages
            try:
                _, message = pending.get_nowait()
            except queue.Empty:
                return
            LOGGER.debug("dropped an unexpected %s after the last response", type(message).__name__)

    def release(self) -> None:
        """A-RELEASE; falls back to A-ABORT when the peer does not answer in time.

        A peer may ask to release first (PS3.8 7.2.2): then we answer its request
        instead of sending ours, as pynetdicom's own loop would.
        """
        self._drain()
        if self.assoc.is_established and self._peer_asked_to_release():
            self.assoc.acse.send_release(is_response=True)
            self.assoc.is_released, self.assoc.is_established = True, False
            self.assoc.kill()
            return
        if self.assoc.is_established:
            self.assoc.release()
        if not self.assoc.is_released and not self.assoc.is_aborted:
            self.abort()

    def _peer_asked_to_release(self) -> bool:
        """Did the peer send an A-RELEASE-RQ (PS3.8 state Sta8, awaiting our A-RELEASE response)?"""
        return self.assoc.dul.state_machine.current_state == "Sta8" or self.assoc.acse.is_release_requested()

    def abort(self) -> None:
        self._drain()
        if not self.assoc.is_aborted and not self.assoc.is_released:
            self.assoc.abort()


#: Queued messages dropped at most when an association ends.
DRAIN_AT_MOST = 10_000


def describe_reject(result: int, source: int, reason: int) -> str:
    """PS3.8 9.3.4: an A-ASSOCIATE-RJ's result, source and reason in words (with advice)."""
    kind = {1: "permanent", 2: "transient"}.get(result, f"result {result}")
    text = REJECT_REASONS.get((source, reason), f"reason {reason}")
    message = f"association rejected ({kind}) by {REJECT_SOURCES.get(source, f'source {source}')}: {text}"
    hint = REJECT_HINTS.get((source, reason))
    return f"{message} ({hint})" if hint else message


def describe_abort(dul) -> str:
    """Why the association ended: the peer's A-ABORT, our socket's finding, or a closed connection."""
    pdu = getattr(dul, "received_abort", None)
    if pdu is not None:
        source, reason = int(pdu.source), int(pdu.reason_diagnostic)
        text = f"A-ABORT from {ABORT_SOURCES.get(source, f'source {source}')}"
        return f"{text}: {ABORT_REASONS.get(reason, f'reason {reason}')}" if source == 2 else text
    failure = getattr(dul.socket, "failure", None)
    return failure or "the peer closed the connection"


def _describe_contexts(contexts: Sequence[PresentationContext]) -> str:
    names = sorted({getattr(cx.abstract_syntax, "name", str(cx.abstract_syntax)) for cx in contexts})
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return shown


def _classify_failure(assoc, peer: Peer, acse: AcseLog, address: str, started: float):
    """Raise the error that says why `assoc` is not established."""
    sock = assoc.dul.socket
    where = f"{peer.host}:{peer.port}" + (f" ({address})" if address != peer.host else "")
    connect_error = getattr(sock, "connect_error", None)
    if connect_error is not None:
        if isinstance(connect_error, ssl.SSLCertVerificationError):
            raise ConnectionFailed(f"TLS: the certificate of {where} could not be verified: "
                                   f"{connect_error.verify_message or connect_error} "
                                   "(check --tls-ca; --tls-no-verify only for testing)")
        if isinstance(connect_error, ssl.SSLError) or (
                peer.tls and isinstance(connect_error, (ConnectionResetError, BrokenPipeError))):
            reason = getattr(connect_error, "reason", None) or connect_error.strerror or connect_error
            raise ConnectionFailed(f"TLS handshake with {where} failed: {reason} "
                                   "(is this a TLS port? does it accept our certificate?)")
        if isinstance(connect_error, socket.timeout):
            raise PeerTimeout(f"no answer from {where} within {peer.timeouts.connect:g} s (connect timeout)")
        if isinstance(connect_error, ConnectionRefusedError):
            raise ConnectionFailed(f"connection refused by {where}: nothing listens on that port "
                                   "(check the port number and that the DICOM server is running)")
        raise ConnectionFailed(f"cannot connect to {where}: {connect_error.strerror or connect_error}")
    reject = getattr(assoc.dul, "received_reject", None)
    if reject is not None:
        raise AssociationRejected(f"{peer}: {describe_reject(*reject)}")
    if assoc.is_rejected:
        primitive = assoc.acceptor.primitive
        raise AssociationRejected(f"{peer}: " + describe_reject(int(primitive.result or 0),
                                                                int(primitive.result_source or 0),
                                                                int(primitive.diagnostic or 0)))
    primitive = acse.last
    if isinstance(primitive, A_ASSOCIATE) and primitive.result == 0:
        cxs = assoc.rejected_contexts or assoc.requestor.requested_contexts
        raise AssociationRejected(
            f"{peer}: association accepted but every presentation context was refused "
            f"({_describe_contexts(cxs)})"
        )
    if getattr(sock, "timed_out", False):
        raise PeerTimeout(f"{peer}: association request failed: {sock.failure}")
    tls_hint = "" if peer.tls else " (if this port expects TLS, add --tls)"
    if isinstance(primitive, (A_ABORT, A_P_ABORT)) or getattr(assoc.dul, "received_abort", None):
        reason = describe_abort(assoc.dul)
        hint = tls_hint if reason == "the peer closed the connection" else ""
        raise AssociationAborted(f"{peer}: association request failed: {reason}{hint}")
    if time.monotonic() - started >= peer.timeouts.association * 0.99:
        raise PeerTimeout(
            f"{peer}: no answer to the association request within {peer.timeouts.association:g} s "
            "(association timeout; is this a DICOM port?)"
        )
    failure = getattr(sock, "failure", None) or "the peer closed the connection"
    raise AssociationAborted(f"{peer}: association request failed: {failure}{tls_hint}")


@contextmanager
def associate(
    peer: Peer,
    contexts: Sequence[PresentationContext],
    *,
    ext_neg: Sequence | None = None,
) -> Iterator[Channel]:
    """Open an association with `peer` proposing `contexts`; release it on exit.

    Raises a :class:`~dicomscu.errors.DicomscuError` subclass when the association
    cannot be established.  On an exception inside the block the association is
    aborted instead of released.
    """
    address = resolve(peer.host, peer.port)
    ae = TunedAE(peer)
    acse = AcseLog()
    started = time.monotonic()
    assoc = ae.associate(
        address,
        peer.port,
        contexts=list(contexts),
        ae_title=peer.called_ae,
        max_pdu=peer.max_pdu,
        ext_neg=list(ext_neg) if ext_neg else None,
        evt_handlers=[(evt.EVT_ACSE_RECV, acse.on_acse_recv)],
        tls_args=(peer.tls.context(), peer.host if peer.tls.verify else None) if peer.tls else None,
    )
    if not assoc.is_established:
        try:
            _classify_failure(assoc, peer, acse, address, started)
        finally:
            _stop(assoc)
    LOGGER.info(
        "association with %s established: %d of %d contexts accepted, peer max PDU %s",
        peer, len(assoc.accepted_contexts), len(contexts), assoc.acceptor.maximum_length,
    )
    channel = Channel(assoc, peer, acse)
    try:
        yield channel
    except BaseException:
        channel.abort()
        raise
    else:
        channel.release()
    finally:
        _stop(assoc)


def _stop(assoc) -> None:
    """Make sure no thread of this association outlives it."""
    assoc.kill()
    if assoc.is_alive():
        assoc.join(timeout=1)
