"""The association state machine (PS3.8 9.2, Tables 9-7 to 9-10) as bytes in, events out.

:class:`Association` is one end of one association, requestor or acceptor.  The
I/O layer feeds it what the socket read (:meth:`~Association.receive_data`) and
takes events from it (:meth:`~Association.next_event`); the methods for what the
local user does (request, accept, send a message, release, abort) return the bytes
to write.  The states are the standard's: Sta1 idle, Sta2/Sta3 acceptor before
accepting, Sta5 requestor awaiting the answer, Sta6 established, Sta7/Sta8
release, Sta9 to Sta12 release collision (PS3.8 7.2.2), Sta13 awaiting close.
Timers are the I/O layer's (ARTIM while awaiting the request or the close, the DIMSE timeout).

Whatever a peer sends, the machine either makes an event of it or raises
:class:`~dicomscu.protocol.pdu.ProtocolError`, after which :meth:`Association.abort`
gives the A-ABORT to send (the standard's AA-8).  No length is trusted: a PDU
longer than the limit is refused from its header, before its body is buffered.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from dicomscu.protocol import pdu as pdus
from dicomscu.protocol.commands import CommandError
from dicomscu.protocol.messages import Message, Reassembler, SequenceError, fragments
from dicomscu.protocol.pdu import ProtocolError

REQUESTOR, ACCEPTOR = "requestor", "acceptor"
#: Association-phase PDUs may be this long whatever maximum length was negotiated (128 contexts
#: of 45 transfer syntaxes are about 150 KB).
ASSOCIATION_PDU_LIMIT = 1 << 20
#: Longest P-DATA-TF accepted when we advertised no limit (maximum length 0).
UNLIMITED_PDU_LIMIT = 64 << 20


class LocalProtocolError(RuntimeError):
    """The local user asked for something the current state does not allow (a bug in the caller)."""


# -- events ---------------------------------------------------------------------------------------------

class AssociationRequested(NamedTuple):
    """Acceptor: the peer's A-ASSOCIATE-RQ arrived; answer with accept() or reject()."""

    request: pdus.AssociateRQ


class AssociationAccepted(NamedTuple):
    accept: pdus.AssociateAC


class AssociationRejected(NamedTuple):
    reject: pdus.AssociateRJ


class MessageReceived(NamedTuple):
    message: Message


class ReleaseRequested(NamedTuple):
    """The peer asked to release; `collision` when we had asked too (PS3.8 7.2.2)."""

    collision: bool = False


class ReleaseConfirmed(pdus.Signal):
    __slots__ = ()


class Aborted(NamedTuple):
    """The peer sent an A-ABORT."""

    abort: pdus.Abort


class ConnectionClosed(NamedTuple):
    """The peer closed the connection; `expected` when the protocol said it would (after a release or reject)."""

    expected: bool
    #: The connection ended in the middle of a PDU.
    mid_pdu: bool = False


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: next_event() has nothing until more bytes are received.
NEED_DATA = _NeedData()

Event = (AssociationRequested | AssociationAccepted | AssociationRejected | MessageReceived | ReleaseRequested
         | ReleaseConfirmed | Aborted | ConnectionClosed)


class Association:
    """One end of an association: the upper-layer protocol without I/O."""

    def __init__(self, role: str, max_receive: int = 0, max_dataset: int | None = None) -> None:
        if role not in (REQUESTOR, ACCEPTOR):
            raise ValueError(f"role must be {REQUESTOR!r} or {ACCEPTOR!r}")
        self.role = role
        #: Our maximum length (advertised in the user information): P-DATA-TF past it is refused.
        self.max_receive = max_receive
        self.state = "Sta4" if role == REQUESTOR else "Sta2"  # the transport is connected when we are made
        self.request_pdu: pdus.AssociateRQ | None = None
        self.accept_pdu: pdus.AssociateAC | None = None
        self._buffer = bytearray()
        self._events: deque = deque()
        self._reassembler = Reassembler(max_dataset)
        self._closed = False

    # -- what the association agreed ------------------------------------------------------------------
    @property
    def peer_max_pdu(self) -> int:
        """The peer's maximum length for the PDUs we send (0: no limit)."""
        if self.role == REQUESTOR:
            return self.accept_pdu.user.max_length if self.accept_pdu else 0
        return self.request_pdu.user.max_length if self.request_pdu else 0

    @property
    def established(self) -> bool:
        return self.state == "Sta6"

    @property
    def mid_pdu(self) -> bool:
        """Part of a PDU has been received (the rest is owed within the network timeout)."""
        return bool(self._buffer)

    def set_sink_factory(self, open_sink, spill_over: int = 0) -> None:
        """Data sets past `spill_over` bytes go to ``open_sink(context_id, command)`` (a DataSink), or stay in
        memory when it gives None."""
        self._reassembler.open_sink = open_sink
        self._reassembler.spill_over = spill_over

    def abandon(self) -> None:
        """The connection is gone: a data set half received drops its sink (a partial file, say)."""
        self._reassembler.abandon()

    # -- input -----------------------------------------------------------------------------------------
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes read from the connection; empty when the peer closed it."""
        if not data:
            self._closed = True
        else:
            self._buffer += data

    def next_event(self):
        """The next event, or :data:`NEED_DATA`; raises ProtocolError when the peer broke the protocol."""
        while not self._events:
            if not self._parse_one():
                break
        if self._events:
            return self._events.popleft()
        if self._closed:
            return self._connection_closed()
        return NEED_DATA

    def _connection_closed(self):
        expected = self.state in ("Sta1", "Sta13")
        mid = bool(self._buffer)
        self._reassembler.abandon()
        self.state, self._buffer = "Sta1", bytearray()
        return ConnectionClosed(expected, mid)

    def _limit(self, pdu_type: int) -> int:
        if pdu_type == pdus.P_DATA_TF:
            return max(self.max_receive, ASSOCIATION_PDU_LIMIT) if self.max_receive else UNLIMITED_PDU_LIMIT
        return ASSOCIATION_PDU_LIMIT

    def _parse_one(self) -> bool:
        """Take one whole PDU off the buffer into events; False when the buffer holds no whole PDU."""
        buffer = self._buffer
        if len(buffer) < 6:
            return False
        pdu_type, _, length = pdus.HEADER.unpack_from(buffer, 0)
        if pdu_type not in pdus.PDU_NAMES:
            raise ProtocolError(f"the peer sent an unknown PDU type 0x{pdu_type:02X}")
        if length > self._limit(pdu_type):
            raise ProtocolError(f"the peer announced a {pdus.PDU_NAMES[pdu_type]} of {length} bytes, more than "
                                f"the {self._limit(pdu_type)} this association accepts")
        if len(buffer) < 6 + length:
            return False
        body = memoryview(bytes(buffer[6: 6 + length]))
        del buffer[: 6 + length]
        if self.state == "Sta13":  # AA-6: ignore what arrives while we wait for the close (A-ABORT: AA-2)
            if pdu_type == pdus.ABORT:
                self.state = "Sta1"
            return True
        if pdu_type == pdus.P_DATA_TF:
            self._p_data(body)
            return True
        try:
            pdu = pdus.decode(pdu_type, body)
        except ProtocolError as exc:
            raise ProtocolError(f"the peer sent a malformed PDU ({exc})") from None
        self._control(pdu)
        return True

    def _unexpected(self, what: str):
        raise ProtocolError(f"the peer sent {what} in state {self.state} ({_STATE_NAMES[self.state]})")

    def _p_data(self, body: memoryview) -> None:
        if self.state not in ("Sta6", "Sta7"):  # DT-2, AR-6
            self._unexpected("a P-DATA-TF")
        try:
            values = list(pdus.pdvs(body))
        except ProtocolError as exc:
            raise ProtocolError(f"the peer sent a malformed P-DATA-TF ({exc})") from None
        try:
            for context_id, control, fragment in values:
                message = self._reassembler.add(context_id, control, fragment)
                if message is not None:
                    self._events.append(MessageReceived(message))
        except (SequenceError, CommandError) as exc:
            raise ProtocolError(f"the peer sent a malformed DIMSE message: {exc}") from None

    def _control(self, pdu) -> None:
        state = self.state
        if isinstance(pdu, pdus.Abort):  # AA-2/AA-3: in every state, the association is over
            self.state = "Sta1"
            self._reassembler.abandon()
            self._events.append(Aborted(pdu))
        elif isinstance(pdu, pdus.AssociateRQ) and state == "Sta2":  # AE-6
            self.request_pdu, self.state = pdu, "Sta3"
            self._events.append(AssociationRequested(pdu))
        elif isinstance(pdu, pdus.AssociateAC) and state == "Sta5":  # AE-3
            self.accept_pdu, self.state = pdu, "Sta6"
            self._events.append(AssociationAccepted(pdu))
        elif isinstance(pdu, pdus.AssociateRJ) and state == "Sta5":  # AE-4
            self.state = "Sta13"  # the requestor closes the connection
            self._events.append(AssociationRejected(pdu))
        elif isinstance(pdu, pdus.ReleaseRQ) and state == "Sta6":  # AR-2
            self.state = "Sta8"
            self._events.append(ReleaseRequested())
        elif isinstance(pdu, pdus.ReleaseRQ) and state == "Sta7":  # AR-8: release collision
            self.state = "Sta9" if self.role == REQUESTOR else "Sta10"
            self._events.append(ReleaseRequested(collision=True))
        elif isinstance(pdu, pdus.ReleaseRP) and state in ("Sta7", "Sta11"):  # AR-3
            self.state = "Sta13"
            self._events.append(ReleaseConfirmed())
        elif isinstance(pdu, pdus.ReleaseRP) and state == "Sta10":  # AR-10
            self.state = "Sta12"
            self._events.append(ReleaseConfirmed())
        else:
            self._unexpected(f"an {pdus.PDU_NAMES[_TYPES[type(pdu)]]}")

    # -- output: what the local user does -------------------------------------------------------------
    def _require(self, action: str, *states: str) -> None:
        if self.state not in states:
            raise LocalProtocolError(f"cannot {action} in state {self.state} ({_STATE_NAMES[self.state]})")

    def request(self, request: pdus.AssociateRQ) -> bytes:
        """Requestor: the A-ASSOCIATE-RQ to send (AE-2)."""
        self._require("request an association", "Sta4")
        self.request_pdu, self.state = request, "Sta5"
        return pdus.encode(request)

    def accept(self, accept: pdus.AssociateAC) -> bytes:
        """Acceptor: the A-ASSOCIATE-AC answering the request (AE-7)."""
        self._require("accept", "Sta3")
        self.accept_pdu, self.state = accept, "Sta6"
        return pdus.encode(accept)

    def reject(self, reject: pdus.AssociateRJ) -> bytes:
        """Acceptor: the A-ASSOCIATE-RJ answering the request (AE-8); then the peer closes."""
        self._require("reject", "Sta3")
        self.state = "Sta13"
        return pdus.encode(reject)

    def send_message(self, context_id: int, command: bytes, dataset=None) -> list:
        """A DIMSE message as P-DATA-TF buffers (DT-1, or AR-7 while the peer waits for our release answer)."""
        self._require("send a message", "Sta6", "Sta8")
        return fragments(context_id, command, dataset, self.peer_max_pdu)

    def release(self) -> bytes:
        """The A-RELEASE-RQ to send (AR-1)."""
        self._require("release", "Sta6")
        self.state = "Sta7"
        return pdus.encode(pdus.ReleaseRQ())

    def release_response(self) -> bytes:
        """The A-RELEASE-RP answering the peer's request (AR-4; AR-9 in a collision)."""
        self._require("answer a release", "Sta8", "Sta9", "Sta12")
        self.state = "Sta11" if self.state == "Sta9" else "Sta13"
        return pdus.encode(pdus.ReleaseRP())

    def abort(self, source: int = 0, reason: int = 0) -> bytes:
        """The A-ABORT to send (AA-1, or AA-8 with source 2 after a protocol error); b"" if nothing to abort."""
        if self.state in ("Sta1", "Sta13") or (self.state == "Sta4"):
            self.state = "Sta13" if self.state == "Sta13" else "Sta1"
            return b""
        self.state = "Sta13"
        for event in self._events:  # messages never taken: what their sinks hold goes too
            if isinstance(event, MessageReceived) and event.message.sink is not None:
                event.message.sink.discard()
        self._events.clear()
        self._reassembler.abandon()
        return pdus.encode(pdus.Abort(source, reason))


_TYPES = {pdus.AssociateRQ: pdus.ASSOCIATE_RQ, pdus.AssociateAC: pdus.ASSOCIATE_AC,
          pdus.AssociateRJ: pdus.ASSOCIATE_RJ, pdus.PDataTF: pdus.P_DATA_TF, pdus.ReleaseRQ: pdus.RELEASE_RQ,
          pdus.ReleaseRP: pdus.RELEASE_RP, pdus.Abort: pdus.ABORT}
_STATE_NAMES = {
    "Sta1": "idle", "Sta2": "awaiting the A-ASSOCIATE-RQ", "Sta3": "awaiting our answer to the association request",
    "Sta4": "awaiting the connection", "Sta5": "awaiting the A-ASSOCIATE-AC or -RJ", "Sta6": "established",
    "Sta7": "awaiting the A-RELEASE-RP", "Sta8": "awaiting our answer to the release request",
    "Sta9": "release collision, awaiting our answer", "Sta10": "release collision, awaiting the A-RELEASE-RP",
    "Sta11": "release collision, awaiting the A-RELEASE-RP", "Sta12": "release collision, awaiting our answer",
    "Sta13": "awaiting the connection close",
}

