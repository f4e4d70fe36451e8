"""Request an association: connect, negotiate, and turn every way it can fail into a clear error.

Name resolution happens up front, so "unknown host" is not reported as "aborted";
failures are classified from what actually happened (connect error, TLS
verification, A-ASSOCIATE-RJ with its decoded reason, A-ABORT with its source,
no answer in time).  The association itself is driven by
:class:`~dicomscu.transport.channel.Channel` on the calling thread: no thread
is started, nothing polls.
"""

from __future__ import annotations

import logging
import socket
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

from dicomscu.errors import AssociationAborted, AssociationRejected, ConnectionFailed, PeerTimeout, UnknownHost
from dicomscu.protocol import machine as m
from dicomscu.protocol import negotiation
from dicomscu.protocol import pdu as pdus
from dicomscu.protocol.negotiation import Proposal
from dicomscu.protocol.pdu import ProtocolError
from dicomscu.transport.channel import Channel, describe_abort
from dicomscu.transport.link import Link, LinkFailed
from dicomscu.transport.peer import IN_MEMORY_SUFFIX, Peer

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


def resolve(host: str, port: int) -> str:
    """The IP address to connect to, or UnknownHost."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnknownHost(f"unknown host '{host}': {getattr(exc, 'strerror', None) or exc}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)  # IPv4 first, as most PACS listen there
    return str(infos[0][4][0])


def describe_reject(result: int, source: int, reason: int) -> str:
    """PS3.8 9.3.4: an A-ASSOCIATE-RJ's result, source and reason in words (with advice)."""
    kind = {1: "permanent", 2: "transient"}.get(result, f"result {result}")
    text = REJECT_REASONS.get((source, reason), f"reason {reason}")
    message = f"association rejected ({kind}) by {REJECT_SOURCES.get(source, f'source {source}')}: {text}"
    hint = REJECT_HINTS.get((source, reason))
    return f"{message} ({hint})" if hint else message



def _describe_contexts(contexts: Sequence[pdus.ProposedContext]) -> str:
    from dicomscu.uids import name_of

    names = sorted({name_of(cx.abstract_syntax) for cx in contexts})
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def connect(peer: Peer, address: str) -> socket.socket:
    """A connected socket to `peer` (TLS-wrapped and verified when configured), or a clear error."""
    if peer.host.endswith(IN_MEMORY_SUFFIX):  # a provider served in memory (loaded only then)
        from dicomscu.transport.memory import connect_in_memory

        in_memory = connect_in_memory(peer.host)
        in_memory.settimeout(peer.timeouts.connect)
        return in_memory
    where = f"{peer.host}:{peer.port}" + (f" ({address})" if address != peer.host else "")
    try:
        sock = socket.create_connection((address, peer.port), timeout=peer.timeouts.connect)
    except socket.timeout:
        raise PeerTimeout(f"no answer from {where} within {peer.timeouts.connect:g} s (connect timeout)") from None
    except ConnectionRefusedError:
        raise ConnectionFailed(f"connection refused by {where}: nothing listens on that port "
                               "(check the port number and that the DICOM server is running)") from None
    except OSError as exc:
        raise ConnectionFailed(f"cannot connect to {where}: {exc.strerror or exc}") from None
    if not peer.tls:
        return sock
    import ssl  # only TLS pays for it

    try:  # the handshake runs within the connect timeout still set on the socket
        return peer.tls.context().wrap_socket(sock, server_hostname=peer.host if peer.tls.verify else None)
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise ConnectionFailed(f"TLS: the certificate of {where} could not be verified: "
                               f"{exc.verify_message or exc} (check --tls-ca; --tls-no-verify only for testing)"
                               ) from None
    except socket.timeout:
        sock.close()
        raise PeerTimeout(f"TLS handshake with {where}: no answer within {peer.timeouts.connect:g} s") from None
    except OSError as exc:  # ssl.SSLError included
        sock.close()
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        raise ConnectionFailed(f"TLS handshake with {where} failed: {reason} "
                               "(is this a TLS port? does it accept our certificate?)") from None


def request_pdu(peer: Peer, proposals: Sequence[Proposal], roles: Sequence[pdus.RoleSelection] = (),
                identity: pdus.UserIdentity | None = None, window: int = 1) -> pdus.AssociateRQ:
    """The A-ASSOCIATE-RQ for `peer`; an asynchronous operations window of `window` is proposed only when it
    is more than 1 (only C-STORE asks for one: :attr:`Peer.window <dicomscu.transport.peer.Peer.window>`)."""
    user = pdus.UserInformation(peer.max_pdu, negotiation.IMPLEMENTATION_CLASS, negotiation.IMPLEMENTATION_VERSION,
                                async_window=(window, 1) if window > 1 else None,
                                roles=tuple(roles), identity=identity)
    return pdus.AssociateRQ(peer.called_ae, peer.calling_ae, negotiation.number(proposals), user)


def _negotiate(link: Link, peer: Peer, request: pdus.AssociateRQ) -> pdus.AssociateAC:
    """Send the request and wait for the answer; the A-ASSOCIATE-AC, or the error that says why not."""
    tls_hint = "" if peer.tls else " (if this port expects TLS, add --tls)"
    deadline = time.monotonic() + peer.timeouts.association
    try:
        link.send(link.core.request(request))
        event = link.next_event(peer.timeouts.association)
        while event is None and time.monotonic() < deadline:
            event = link.next_event(deadline - time.monotonic())
    except LinkFailed as exc:
        link.abort()
        error = PeerTimeout if exc.timed_out else AssociationAborted
        raise error(f"{peer}: association request failed: {exc.reason}") from None
    except ProtocolError as exc:
        link.protocol_error()
        raise AssociationAborted(f"{peer}: association request failed: {exc} (protocol error)") from None
    if isinstance(event, m.AssociationAccepted):
        return event.accept
    link.close()
    if event is None:
        raise PeerTimeout(f"{peer}: no answer to the association request within {peer.timeouts.association:g} s "
                          "(association timeout; is this a DICOM port?)")
    if isinstance(event, m.AssociationRejected):
        reject = event.reject
        raise AssociationRejected(f"{peer}: {describe_reject(reject.result, reject.source, reject.reason)}")
    if isinstance(event, m.Aborted):
        raise AssociationAborted(f"{peer}: association request failed: {describe_abort(event.abort)}")
    raise AssociationAborted(f"{peer}: association request failed: the peer closed the connection{tls_hint}")


def open_channel(peer: Peer, proposals: Sequence[Proposal], *, roles: Sequence[pdus.RoleSelection] = (),
                 identity: pdus.UserIdentity | None = None, window: int = 1) -> Channel:
    """An established association with `peer`, or a :class:`~dicomscu.errors.DicomscuError` saying why not."""
    address = peer.host if peer.host.endswith(IN_MEMORY_SUFFIX) else resolve(peer.host, peer.port)
    request = request_pdu(peer, proposals, roles, identity, window)
    link = Link(connect(peer, address), m.Association(m.REQUESTOR, peer.max_pdu), peer.timeouts.network)
    accept = _negotiate(link, peer, request)
    accepted, refused = negotiation.agreed(request, accept)
    if not accepted:
        link.abort()
        raise AssociationRejected(f"{peer}: association accepted but every presentation context was refused "
                                  f"({_describe_contexts(refused)})")
    agreed = negotiation.window(request, accept)
    LOGGER.info("association with %s established: %d of %d contexts accepted, peer max PDU %s%s",
                peer, len(accepted), len(proposals), accept.user.max_length,
                f", up to {agreed} operations outstanding" if window > 1 else "")
    return Channel(link, accepted, name=str(peer), dimse_timeout=peer.timeouts.dimse, refused=refused,
                   roles=negotiation.requestor_roles(request, accept), release_timeout=peer.timeouts.association,
                   window=agreed)


@contextmanager
def associate(peer: Peer, proposals: Sequence[Proposal], *, roles: Sequence[pdus.RoleSelection] = (),
              identity: pdus.UserIdentity | None = None, window: int = 1) -> Iterator[Channel]:
    """Open an association with `peer` proposing `proposals`; release it on exit.

    On an exception inside the block the association is aborted instead (or, if
    the peer asked to release, answered).
    """
    channel = open_channel(peer, proposals, roles=roles, identity=identity, window=window)
    try:
        yield channel
    except BaseException:
        channel.release() if channel.release_requested else channel.abort()
        raise
    else:
        channel.release()
