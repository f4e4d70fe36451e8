"""The service-class provider side: answering the DIMSE requests of an association we accepted.

:class:`Provider` runs one association: it waits for requests (an idle association
is aborted after the policy's idle timeout), answers C-ECHO, hands C-STORE data
sets to `on_store` (which returns the status), and dispatches anything else to the
methods a subclass adds (``dicomscu serve`` adds C-FIND, C-GET and C-MOVE).  A
request nobody handles is answered "unrecognized operation" (0x0211), never left
unanswered.  The peer's release is answered; an abort or a lost connection ends it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from dicomscu.errors import DicomscuError
from dicomscu.protocol import commands as dimse
from dicomscu.protocol.messages import DataSink, Message
from dicomscu.transport.channel import AssociationEnded, Channel

LOGGER = logging.getLogger("dicomscu.server")

#: A C-STORE data set larger than this goes to its sink (a file) as it arrives instead of memory: a big one
#: costs no more memory than this, a small one is never read back from a file.
SPILL_OVER = 8 << 20
#: What makes a C-STORE's status when called: the last of its work (serve's index transaction), done for every
#: C-STORE held back on an association at once (:meth:`Provider.serve`).
Later = Callable[[], int]
#: on_store(sop_class, sop_instance, data set (bytes, or the sink it went to), transfer syntax) -> status, or
#: what makes it (:data:`Later`)
StoreCallback = Callable[[str, str, Any, str], "int | Later"]
#: open_sink(sop_class, sop_instance, transfer syntax) -> where a C-STORE data set goes as it arrives, or None
SinkFactory = Callable[[str, str, str], Optional[DataSink]]


class Provider:
    """Serves one association at a time per call of :meth:`serve` (thread-safe if `on_store` is)."""

    def __init__(self, on_store: StoreCallback | None = None, open_sink: SinkFactory | None = None) -> None:
        self.on_store = on_store
        self.open_sink = open_sink
        self.handlers: dict[int, Callable[[Channel, Message], None]] = {
            dimse.C_ECHO_RQ: self.echo,
            dimse.C_STORE_RQ: self.store,
            dimse.C_CANCEL_RQ: self.cancel_outside_operation,
        }

    def serve(self, channel: Channel) -> None:
        """Answer requests until the peer releases, aborts or goes silent.

        With an asynchronous operations window (the requestor may have several C-STOREs outstanding), the
        responses to C-STOREs are held back while more requests are already here, up to the window: then
        they are made together (serve writes their rows in one transaction) and sent in one write, in the
        order of their requests, before anything else is answered or awaited.  Without one, each is answered
        as it is stored.
        """
        if self.open_sink is not None and self.on_store is not None:
            channel.link.core.set_sink_factory(lambda context_id, command: self._sink(channel, context_id, command),
                                               SPILL_OVER)
        while True:
            try:
                if channel.holding and (channel.holding >= channel.window or not channel.input_ready()):
                    channel.send_held()
                message = channel.poll(channel.dimse_timeout)
                if message is None:
                    LOGGER.warning("%s: idle for %g s: association aborted", channel, channel.dimse_timeout)
                    channel.abort()
                    return
                if channel.holding and message.command.CommandField != dimse.C_STORE_RQ:
                    channel.send_held()  # every earlier response goes first
                self.handle(channel, message)
            except AssociationEnded:
                try:
                    channel.send_held()  # (allowed after the peer's release request: PS3.8 AR-7)
                except DicomscuError as exc:
                    LOGGER.info("%s", exc)
                    channel.abort()
                    return
                channel.release()
                return
            except DicomscuError as exc:  # aborted, lost, timed out: logged once, the association is over
                LOGGER.info("%s", exc)
                channel.abort()
                try:
                    channel.send_held()  # their work is still done (nothing can be sent)
                except DicomscuError:
                    pass
                return

    def handle(self, channel: Channel, message: Message) -> None:
        """Answer one request by its handler (:attr:`handlers`), or as an unrecognized operation."""
        self.handlers.get(message.command.CommandField or 0, self.unrecognized)(channel, message)

    def _sink(self, channel: Channel, context_id: int, command) -> DataSink | None:
        """A sink for the data set of a C-STORE-RQ we will store (others stay in memory: identifiers)."""
        if command.CommandField != dimse.C_STORE_RQ or self.open_sink is None:
            return None
        context = channel.accepted_context(context_id)
        if context is None or context.abstract_syntax != command.AffectedSOPClassUID:
            return None  # refused below: nothing to keep
        return self.open_sink(command.AffectedSOPClassUID or "", command.AffectedSOPInstanceUID or "",
                              context.transfer_syntax)

    def echo(self, channel: Channel, message: Message) -> None:
        request = message.command
        channel.send_encoded(message.context_id, dimse.c_echo_rsp(request.MessageID or 0, 0x0000,
                                                                  request.AffectedSOPClassUID or ""),
                             None, "C-ECHO-RSP")

    def store(self, channel: Channel, message: Message) -> None:
        """Store the request's data set and answer with its status: at once, or, with an asynchronous window,
        held back (:meth:`serve`) so that the work "stored" waits for is done for several at once."""
        request = message.command
        sop_class, sop_instance = request.AffectedSOPClassUID or "", request.AffectedSOPInstanceUID or ""
        outcome = self._stored(channel, message, sop_class, sop_instance)

        def response() -> bytes:
            status = outcome if isinstance(outcome, int) else _settled(outcome, sop_instance)
            return dimse.c_store_rsp(request.MessageID or 0, sop_class, sop_instance, status)

        if channel.window > 1 and (channel.holding or not isinstance(outcome, int)):  # (answers keep their order)
            channel.send_later(message.context_id, response, "C-STORE-RSP")
        else:
            channel.send_encoded(message.context_id, response(), None, "C-STORE-RSP")

    def _stored(self, channel: Channel, message: Message, sop_class: str, sop_instance: str) -> "int | Later":
        """Check the request against its context and hand the data set to `on_store`: the status, or what
        makes it."""
        context = channel.context_for_id(message.context_id)
        data = message.sink if message.sink is not None else message.dataset
        if self.on_store is None or context.abstract_syntax != sop_class:
            return 0x0122  # Refused: SOP Class not supported (on this context)
        if message.oversize:
            LOGGER.warning("refused %s: its data set is larger than the limit this server keeps", sop_instance)
            return 0xA700  # Refused: out of resources
        if data is None:
            return 0xC000  # a C-STORE-RQ without a data set: cannot understand
        try:
            return self.on_store(sop_class, sop_instance, data, context.transfer_syntax)
        except Exception as exc:  # a bug must not kill the association
            LOGGER.exception("storing %s failed: %s", sop_instance, exc)
            if message.sink is not None:
                message.sink.discard()  # whatever on_store made of it, nothing half kept
            return 0x0110  # Processing failure

    def cancel_outside_operation(self, channel: Channel, message: Message) -> None:
        """A C-CANCEL-RQ for nothing under way (it raced the final response): nothing to answer (PS3.7 9.3.2.3)."""
        LOGGER.debug("%s: C-CANCEL for message %s, which is over", channel, message.command.MessageIDBeingRespondedTo)

    def unrecognized(self, channel: Channel, message: Message) -> None:
        request = message.command
        if request.is_response or request.MessageID is None:
            LOGGER.warning("%s: unexpected %s: ignored", channel, request.name)
            return
        LOGGER.warning("%s: %s is not supported: answered 0x0211", channel, request.name)
        response = dimse.encode(AffectedSOPClassUID=request.AffectedSOPClassUID,
                                CommandField=(request.CommandField or 0) | 0x8000,
                                MessageIDBeingRespondedTo=request.MessageID, CommandDataSetType=dimse.NO_DATASET,
                                Status=0x0211)
        channel.send_encoded(message.context_id, response, None, "response")


def _settled(later: Later, sop_instance: str) -> int:
    """The status `later` makes (a failure to make it is a processing failure, never a lost association)."""
    try:
        return later()
    except Exception as exc:
        LOGGER.exception("storing %s failed: %s", sop_instance, exc)
        return 0x0110
