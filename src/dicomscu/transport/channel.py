"""An established association, driven from the calling thread: send DIMSE messages, wait for them.

The same class serves both ends: :func:`dicomscu.transport.association.associate`
makes one for the associations we request, :mod:`dicomscu.transport.listener` for
the ones we accept.  Each wait is bounded (the DIMSE timeout, or the caller's
`seconds`); each failure becomes a :class:`~dicomscu.errors.DicomscuError` that
says what happened: the peer's A-ABORT with its source and reason, a protocol
error, a timeout, a lost connection.  Messages are read only when asked for, so a
consumer slowed by its output slows the peer through TCP instead of filling memory.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Callable, Collection, Sequence

from dicomscu.errors import AssociationAborted, PeerTimeout
from dicomscu.protocol import machine as m
from dicomscu.protocol.messages import Message
from dicomscu.protocol.negotiation import AcceptedContext
from dicomscu.protocol.pdu import ProposedContext, ProtocolError
from dicomscu.transport.link import Link, LinkFailed

LOGGER = logging.getLogger("dicomscu.transport")

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
#: How long an orderly release may take before we abort instead.
RELEASE_TIMEOUT = 10.0


def describe_abort(abort) -> str:
    source, reason = abort.source, abort.reason
    text = f"A-ABORT from {ABORT_SOURCES.get(source, f'source {source}')}"
    return f"{text}: {ABORT_REASONS.get(reason, f'reason {reason}')}" if source == 2 else text


class AssociationEnded(AssociationAborted):
    """The peer asked to release while a message was awaited (for a server, the normal end)."""


class Channel:
    """An established association: accepted contexts, message IDs, bounded sends and receives."""

    def __init__(self, link: Link, accepted: Sequence[AcceptedContext], *, name: str, dimse_timeout: float,
                 refused: Sequence[ProposedContext] = (), roles: dict | None = None,
                 release_timeout: float = RELEASE_TIMEOUT, window: int = 1) -> None:
        self.link = link
        #: Operations the requestor may have outstanding at once (the asynchronous operations window agreed).
        self.window = window
        self.release_timeout = release_timeout
        self.name = name
        self.dimse_timeout = dimse_timeout
        self.accepted = list(accepted)
        self.rejected = list(refused)
        #: SOP class -> (requestor may be SCU, requestor may be SCP), as negotiated.
        self.roles = roles or {}
        self._by_id = {cx.context_id: cx for cx in self.accepted}
        self._message_id = 0
        #: The peer asked to release (seen while waiting for something else).
        self.release_requested = False
        #: Requests that arrived while we awaited a response of our own (PS3.7 allows either side to
        #: request): handed out by the next :meth:`poll` or :meth:`receive_any`, in arrival order.
        self._deferred: deque[Message] = deque()
        #: Responses held back (:meth:`send_later`): (context ID, what makes the command set).
        self._held: list[tuple[int, Callable[[], bytes]]] = []
        self._held_what = "response"

    def __str__(self) -> str:
        return self.name

    @property
    def peer_max_pdu(self) -> int:
        return self.link.core.peer_max_pdu

    @property
    def active(self) -> bool:
        return self.link.core.state == "Sta6"

    def context_for(self, abstract_syntax: str, transfer_syntax: str | None = None) -> AcceptedContext | None:
        """The accepted context for `abstract_syntax` (with that transfer syntax, if given)."""
        for cx in self.accepted:
            if cx.abstract_syntax == abstract_syntax and transfer_syntax in (None, cx.transfer_syntax):
                return cx
        return None

    def accepted_context(self, context_id: int) -> AcceptedContext | None:
        """The accepted context `context_id`, or None (a peer may name any)."""
        return self._by_id.get(context_id)

    def context_for_id(self, context_id: int) -> AcceptedContext:
        """The accepted context of a received message (:meth:`_next` refuses one on any other, aborting)."""
        return self._by_id[context_id]

    def next_message_id(self) -> int:
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    # -- DIMSE -----------------------------------------------------------------------------------------
    def send_encoded(self, context_id: int, command: bytes, dataset, what: str) -> None:
        """Send a message whose command set is encoded (:mod:`dicomscu.protocol.commands`)."""
        self._check_open(what)
        self._send(self.link.core.send_message(context_id, command, dataset), what)

    def send_later(self, context_id: int, make_command: Callable[[], bytes], what: str) -> None:
        """Hold back a response (no data set) until :meth:`send_held`: `make_command` is called then, after
        the work it reports on (an index transaction, say) can be done for all those held at once."""
        self._held.append((context_id, make_command))
        self._held_what = what

    @property
    def holding(self) -> int:
        """Responses held back by :meth:`send_later`."""
        return len(self._held)

    def send_held(self) -> None:
        """Make every response held back and send them, in the order of their requests, in one write; when
        the association cannot carry them any more, they are still made (the work they report is done)."""
        held, self._held = self._held, []
        if not held:
            return
        still_open = self.link.core.state in ("Sta6", "Sta8")
        buffers = []
        for context_id, make_command in held:
            command = make_command()  # made even when it cannot be sent: the work it reports is done
            if still_open:
                buffers.extend(self.link.core.send_message(context_id, command, None))
        self._check_open(self._held_what)
        self._send(buffers, self._held_what)

    def _check_open(self, what: str) -> None:
        if self.link.core.state not in ("Sta6", "Sta8"):
            raise AssociationAborted(f"{self.name}: the association is over; the {what} cannot be sent")

    def _send(self, buffers, what: str) -> None:
        try:
            self.link.send(buffers)
        except LinkFailed as exc:
            self.link.abort()
            error = PeerTimeout if exc.timed_out else AssociationAborted
            raise error(f"{self.name}: {exc.reason} (sending the {what})") from None

    def receive_any(self, what: str, seconds: float | None = None) -> Message:
        """The next DIMSE message, request or response, within `seconds` (default: the DIMSE timeout)."""
        message = self._next(what, self.dimse_timeout if seconds is None else seconds)
        if message is None:
            self.abort()
            raise PeerTimeout(f"{self.name}: no {what} response within {self.dimse_timeout:g} s (DIMSE timeout)")
        return message

    def receive(self, message_id: int | Collection[int], what: str) -> Message:
        """The response to `message_id` (or to any of several outstanding at once, which a peer may answer
        in any order); anything else is a protocol error (abort)."""
        message = self.receive_any(what)
        command = message.command
        if not command.is_response or command.Status is None:
            self.abort()
            raise AssociationAborted(f"{self.name}: the peer sent a {command.name} without a status while we "
                                     f"waited for the {what} response (protocol error)")
        awaited = (message_id,) if isinstance(message_id, int) else message_id
        if command.MessageIDBeingRespondedTo not in awaited:
            self.abort()
            expected = message_id if isinstance(message_id, int) else "any outstanding"
            raise AssociationAborted(f"{self.name}: the {what} response answers message "
                                     f"{command.MessageIDBeingRespondedTo}, not {expected} (protocol error)")
        return message

    def input_ready(self) -> bool:
        """Something from the peer is here to be read without waiting (another request, say)."""
        return bool(self._deferred) or self.link.input_ready()

    def poll(self, seconds: float, *, fresh: bool = False) -> Message | None:
        """The next message within `seconds`, or None (to drain after a cancel, or look for a C-CANCEL);
        `fresh`: only one read now, past the requests kept by :meth:`defer` (a wait for our own response)."""
        return self._next("message", max(seconds, 0.0), fresh)

    def defer(self, message: Message) -> None:
        """Keep a request that arrived while we awaited something else, for the next receive."""
        self._deferred.append(message)

    def _next(self, what: str, seconds: float, fresh: bool = False) -> Message | None:
        if self._deferred and not fresh:
            return self._deferred.popleft()
        deadline = time.monotonic() + seconds
        while True:
            try:
                event = self.link.next_event(max(deadline - time.monotonic(), 0.0))
            except LinkFailed as exc:
                self.link.abort()
                error = PeerTimeout if exc.timed_out else AssociationAborted
                raise error(f"{self.name}: {exc.reason} (waiting for the {what})") from None
            except ProtocolError as exc:
                LOGGER.error("%s: %s: aborting the association", self.name, exc)
                self.link.protocol_error()
                raise AssociationAborted(f"{self.name}: association aborted: {exc} (protocol error)") from None
            if event is None:
                return None
            if isinstance(event, m.MessageReceived):
                message = event.message
                if self.accepted_context(message.context_id) is None:
                    self.abort()
                    raise AssociationAborted(f"{self.name}: the peer sent a {message.command.name} on "
                                             f"presentation context {message.context_id}, which was never "
                                             "accepted (protocol error)")
                return message
            if isinstance(event, m.ReleaseRequested):
                self.release_requested = True
                raise AssociationEnded(f"{self.name}: the peer released the association while we waited for "
                                       f"the {what}")
            self._ended(event, what)

    def _ended(self, event, what: str):
        self.link.close()
        if isinstance(event, m.Aborted):
            reason = describe_abort(event.abort)
        elif isinstance(event, m.ConnectionClosed) and event.mid_pdu:
            reason = "the peer closed the connection in the middle of a PDU"
        else:
            reason = "the peer closed the connection"
        raise AssociationAborted(f"{self.name}: association lost while waiting for the {what}: {reason}")

    # -- lifetime --------------------------------------------------------------------------------------
    def release(self) -> None:
        """A-RELEASE (answering the peer's, if it asked first); A-ABORT when the peer does not answer in time."""
        core, link = self.link.core, self.link
        try:
            if core.state == "Sta8":  # the peer asked first: answer
                link.send(core.release_response())
                self._await_close()
                link.close()
                return
            if core.state != "Sta6":
                link.close()
                return
            link.send(core.release())
            deadline = time.monotonic() + self.release_timeout
            while core.state not in ("Sta1", "Sta13"):
                event = link.next_event(max(deadline - time.monotonic(), 0.0))
                if event is None:
                    LOGGER.warning("%s: no answer to our release request: aborting", self.name)
                    link.abort()
                    return
                if isinstance(event, m.ReleaseRequested) and core.role == m.REQUESTOR:  # collision (AR-8, AR-9)
                    link.send(core.release_response())
                elif isinstance(event, m.ReleaseConfirmed) and core.state == "Sta12":  # collision, acceptor
                    link.send(core.release_response())
                elif isinstance(event, m.MessageReceived):  # AR-6: a late message; nobody waits for it now
                    LOGGER.debug("%s: dropped a %s that arrived after our release request", self.name,
                                 event.message.command.name)
                elif isinstance(event, (m.Aborted, m.ConnectionClosed)):
                    break
        except (LinkFailed, ProtocolError) as exc:
            LOGGER.debug("%s: release failed: %s", self.name, exc)
            link.abort()
            return
        link.close()

    def _await_close(self) -> None:
        """After our A-RELEASE-RP the requestor closes the connection (PS3.8 Sta13); bounded."""
        if self.link.core.role == m.REQUESTOR:
            return
        try:
            self.link.next_event(self.release_timeout)
        except (LinkFailed, ProtocolError):
            pass

    def abort(self) -> None:
        self.link.abort()
