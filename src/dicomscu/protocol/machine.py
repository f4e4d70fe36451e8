"""The association state machine (PS3.8 9.2, Tables 9-7 to 9-10) as bytes in, events out.

:class:`Association` is one end of one association, requestor or acceptor.  The
I/O layer feeds it what the socket read (:meth:`~Association.receive_data`) and
takes events from it (:meth:`~Association.next_event`); the methods for what the
local user does (request, accept, send a message, release, abort) return the bytes
to write.  The states are the standard's: Sta1 idle, Sta2/Sta3 acceptor before
accepting, Sta5 requestor awaiting the answer, Sta6 established, Sta7/Sta8
release, Sta9 to Sta12 release collision (PS3.8 7.2.2), Sta13 awaiting close.
Timers are the I/O layer's (ARTIM while awaiting the request or the close, the DIMSE timeout).

The transitions are tables, as PS3.8 Table 9-10 is: :data:`RECEIVED` maps (state,
PDU received) to (action, next state), :data:`LOCAL` maps what the local user does to
the states it is allowed in and the state it leads to.  A pair in no table is a
protocol error.  Whatever a peer sends, the machine either makes an event of it or
raises :class:`~dicomscu.protocol.pdu.ProtocolError` and enters its error state (AA-8:
Sta13, :attr:`Association.failure` set): from then on nothing is sent but the one
A-ABORT that :meth:`Association.abort` gives, and :meth:`Association.next_event` raises
the same error again.  No length is trusted: a PDU longer than the limit is refused
from its header, before its body is buffered.
"""

from __future__ import annotations

from collections import deque
from typing import NamedTuple, NoReturn

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


#: (state, PDU type received) -> (PS3.8 action, next state).  A-ABORT is taken in every state (AA-3, or AA-2
#: in Sta13), and anything else in Sta13 is ignored (AA-6); every other pair is a protocol error (AA-8).
#: (A release collision's next state depends on the role: "collision" below.)
RECEIVED: dict[tuple[str, int], tuple[str, str]] = {
    ("Sta2", pdus.ASSOCIATE_RQ): ("AE-6", "Sta3"),
    ("Sta5", pdus.ASSOCIATE_AC): ("AE-3", "Sta6"),
    ("Sta5", pdus.ASSOCIATE_RJ): ("AE-4", "Sta13"),  # the requestor closes the connection
    ("Sta6", pdus.P_DATA_TF): ("DT-2", "Sta6"),
    ("Sta7", pdus.P_DATA_TF): ("AR-6", "Sta7"),
    ("Sta6", pdus.RELEASE_RQ): ("AR-2", "Sta8"),
    ("Sta7", pdus.RELEASE_RQ): ("AR-8", "collision"),  # Sta9 for the requestor, Sta10 for the acceptor
    ("Sta7", pdus.RELEASE_RP): ("AR-3", "Sta13"),
    ("Sta11", pdus.RELEASE_RP): ("AR-3", "Sta13"),
    ("Sta10", pdus.RELEASE_RP): ("AR-10", "Sta12"),
}
#: What the local user does -> {state it is allowed in: next state}.
LOCAL: dict[str, dict[str, str]] = {
    "request an association": {"Sta4": "Sta5"},  # AE-2
    "accept": {"Sta3": "Sta6"},  # AE-7
    "reject": {"Sta3": "Sta13"},  # AE-8: then the peer closes
    "send a message": {"Sta6": "Sta6", "Sta8": "Sta8"},  # DT-1, AR-7
    "release": {"Sta6": "Sta7"},  # AR-1
    "answer a release": {"Sta8": "Sta13", "Sta9": "Sta11", "Sta12": "Sta13"},  # AR-4, AR-9
}


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
        self._events: deque[Event] = deque()
        self._reassembler = Reassembler(max_dataset)
        self._closed = False
        #: The protocol error that put the machine in its error state (AA-8), or None.
        self.failure: ProtocolError | None = None
        self._abort_owed = False  # the A-ABORT of AA-8, given once by abort()

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

    @property
    def has_input(self) -> bool:
        """Bytes, events or the end of the connection are here, not yet taken by :meth:`next_event`."""
        return bool(self._buffer or self._events or self._closed)

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

    def next_event(self) -> "Event | _NeedData":
        """The next event, or :data:`NEED_DATA`; raises ProtocolError when the peer broke the protocol (and
        again on every later call: the machine is in its error state)."""
        if self.failure is not None:
            raise self.failure
        while not self._events:
            try:
                parsed = self._parse_one()
            except ProtocolError as exc:
                self._fail(exc)
                raise
            if not parsed:
                break
        if self._events:
            return self._events.popleft()
        if self._closed:
            return self._connection_closed()
        return NEED_DATA

    def _fail(self, error: ProtocolError) -> None:
        """AA-8: the error state; what was received and not taken goes, the A-ABORT is owed."""
        self.failure = error
        self._abort_owed = self.state not in ("Sta1", "Sta13")
        self.state = "Sta13"
        for event in self._events:
            if isinstance(event, MessageReceived) and event.message.sink is not None:
                event.message.sink.discard()
        self._events.clear()
        self._reassembler.abandon()
        self._buffer = bytearray()

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
        if pdu_type == pdus.ABORT:  # AA-3: in every state, the association is over
            try:
                abort = pdus.decode(pdu_type, body)
            except ProtocolError:
                abort = pdus.Abort(0, 0)  # an A-ABORT we cannot read still ends the association
            self.state = "Sta1"
            self._reassembler.abandon()
            self._events.append(Aborted(abort if isinstance(abort, pdus.Abort) else pdus.Abort(0, 0)))
            return True
        pdu = None
        if pdu_type != pdus.P_DATA_TF:
            try:
                pdu = pdus.decode(pdu_type, body)
            except ProtocolError as exc:
                raise ProtocolError(f"the peer sent a malformed PDU ({exc})") from None
        transition = RECEIVED.get((self.state, pdu_type))
        if transition is None:
            self._unexpected(f"an {pdus.PDU_NAMES[pdu_type]}")
        action, following = transition
        if pdu is None:
            self._p_data(body)
        else:
            self._events.append(self._indication(action, pdu))
        if following == "collision":
            following = "Sta9" if self.role == REQUESTOR else "Sta10"
        self.state = following
        return True

    def _unexpected(self, what: str) -> NoReturn:
        raise ProtocolError(f"the peer sent {what} in state {self.state} ({_STATE_NAMES[self.state]})")

    def _p_data(self, body: memoryview) -> None:
        """DT-2 (AR-6 while our release request is out): the PDVs into messages."""
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

    def _indication(self, action: str, pdu):
        """The event an association-phase action of :data:`RECEIVED` gives the user."""
        if action == "AE-6":
            self.request_pdu = pdu
            return AssociationRequested(pdu)
        if action == "AE-3":
            self.accept_pdu = pdu
            return AssociationAccepted(pdu)
        if action == "AE-4":
            return AssociationRejected(pdu)
        if action in ("AR-2", "AR-8"):
            return ReleaseRequested(collision=action == "AR-8")
        return ReleaseConfirmed()  # AR-3, AR-10

    # -- output: what the local user does -------------------------------------------------------------
    def _take(self, action: str) -> None:
        """Move along :data:`LOCAL` for `action`, or refuse it (LocalProtocolError) in this state."""
        following = LOCAL[action].get(self.state)
        if following is None:
            after = " after the peer's protocol error" if self.failure is not None else ""
            raise LocalProtocolError(f"cannot {action} in state {self.state} ({_STATE_NAMES[self.state]}){after}")
        self.state = following

    def request(self, request: pdus.AssociateRQ) -> bytes:
        """Requestor: the A-ASSOCIATE-RQ to send (AE-2)."""
        self._take("request an association")
        self.request_pdu = request
        return pdus.encode(request)

    def accept(self, accept: pdus.AssociateAC) -> bytes:
        """Acceptor: the A-ASSOCIATE-AC answering the request (AE-7)."""
        self._take("accept")
        self.accept_pdu = accept
        return pdus.encode(accept)

    def reject(self, reject: pdus.AssociateRJ) -> bytes:
        """Acceptor: the A-ASSOCIATE-RJ answering the request (AE-8); then the peer closes."""
        self._take("reject")
        return pdus.encode(reject)

    def send_message(self, context_id: int, command: bytes, dataset=None) -> list:
        """A DIMSE message as P-DATA-TF buffers (DT-1, or AR-7 while the peer waits for our release answer)."""
        self._take("send a message")
        return fragments(context_id, command, dataset, self.peer_max_pdu)

    def release(self) -> bytes:
        """The A-RELEASE-RQ to send (AR-1)."""
        self._take("release")
        return pdus.encode(pdus.ReleaseRQ())

    def release_response(self) -> bytes:
        """The A-RELEASE-RP answering the peer's request (AR-4; AR-9 in a collision)."""
        self._take("answer a release")
        return pdus.encode(pdus.ReleaseRP())

    def abort(self, source: int = 0, reason: int = 0) -> bytes:
        """The A-ABORT to send (AA-1, or AA-8 with source 2 after a protocol error: given once); b"" if there is
        nothing to abort."""
        if self._abort_owed:
            self._abort_owed = False
            return pdus.encode(pdus.Abort(source, reason))
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


_STATE_NAMES = {
    "Sta1": "idle", "Sta2": "awaiting the A-ASSOCIATE-RQ", "Sta3": "awaiting our answer to the association request",
    "Sta4": "awaiting the connection", "Sta5": "awaiting the A-ASSOCIATE-AC or -RJ", "Sta6": "established",
    "Sta7": "awaiting the A-RELEASE-RP", "Sta8": "awaiting our answer to the release request",
    "Sta9": "release collision, awaiting our answer", "Sta10": "release collision, awaiting the A-RELEASE-RP",
    "Sta11": "release collision, awaiting the A-RELEASE-RP", "Sta12": "release collision, awaiting our answer",
    "Sta13": "awaiting the connection close",
}

