"""C-FIND: send one identifier, stream the matches, stop cleanly on demand.

The sequence: associate proposing the model's FIND SOP class; send the C-FIND-RQ
with the identifier; every pending response carries one match, handed to
`on_answer` as soon as it is decoded (nothing accumulates); the final response's
status ends the query.  ``limit`` (or Ctrl-C) sends a C-CANCEL-RQ and drains the
responses still in flight, so the peer is left in a clean state.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Generator, Iterator, Literal, overload

from dicomscu.errors import DicomscuError, OperationFailed
from dicomscu.files.probe import top_level_bytes
from dicomscu.operations.options import FindOptions, given
from dicomscu.operations.status import FAILURE, PENDING, Status, decode as decode_status
from dicomscu.query.identifier import Query
from dicomscu.protocol import commands as dimse
from dicomscu.protocol.messages import Message
from dicomscu.protocol.negotiation import Proposal
from dicomscu.transport import interrupts
from dicomscu.transport.association import associate
from dicomscu.transport.channel import Channel
from dicomscu.transport.peer import Peer
from dicomscu.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_LE, IMPLICIT_VR_LE, TransferSyntax

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

#: How long to wait for the peer to acknowledge a C-CANCEL before giving up on it.
LOGGER = logging.getLogger("dicomscu")
#: After a C-CANCEL (--limit, Ctrl-C) the peer gets this long to end the C-FIND before an A-ABORT.
CANCEL_GRACE = 5.0


@dataclass(frozen=True)
class RawAnswer:
    """One match as received: the encoded identifier and its transfer syntax."""

    raw: bytes
    syntax: str

    def dataset(self) -> Dataset:
        """The identifier decoded by pydicom (values are decoded on access)."""
        from dicomscu.files.codec import decode

        syntax = self.syntax
        try:
            if syntax != DEFLATED_EXPLICIT_VR_LE:
                top_level_bytes(self.raw, syntax, [])  # pydicom silently accepts a cut data set
            dataset = decode(self.raw, syntax)
            for element in dataset:  # touch every element now: garbage fails here, not in the output
                element.value
        except Exception as exc:
            raise OperationFailed(f"a C-FIND answer could not be decoded ({type(exc).__name__}: {exc}); "
                                  "the server sent a broken identifier") from None
        return dataset


@dataclass
class FindReport:
    peer: Peer
    query: Query
    matches: int = 0
    status: Status | None = None
    cancelled: bool = False
    #: The peer kept answering after our C-CANCEL, so the association was aborted.
    cancel_ignored: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status.category not in (FAILURE,)


@overload
def find(peer: Peer, query: Query, options: FindOptions | None = None, *,
         on_answer: Callable[[Dataset], object] | None = None, limit: int | None = None,
         raw: Literal[False] = False) -> FindReport: ...


@overload
def find(peer: Peer, query: Query, options: FindOptions | None = None, *,
         on_answer: Callable[[RawAnswer], object] | None = None, limit: int | None = None,
         raw: Literal[True]) -> FindReport: ...


def find(
    peer: Peer,
    query: Query,
    options: FindOptions | None = None,
    *,
    on_answer: Callable[[Any], object] | None = None,
    limit: int | None = None,
    raw: bool = False,
) -> FindReport:
    """Run `query` on `peer`; each match goes to `on_answer`; returns the totals.

    `options` (:class:`~dicomscu.operations.options.FindOptions`), or its `limit` as a keyword: stop after
    that many matches (a C-CANCEL).  `on_answer` gets a pydicom Dataset, or with `raw` a :class:`RawAnswer`
    (decoding left to the caller: the command line's machine formats read the bytes directly).

    A failure status raises :class:`~dicomscu.errors.OperationFailed` (after the
    matches received so far were handed over); association problems raise the
    other :class:`~dicomscu.errors.DicomscuError` subclasses.
    """
    limit = given(options, FindOptions, limit=limit).limit
    started = time.perf_counter()
    report = FindReport(peer, query)
    with associate(peer, [_context(query)]) as channel:
        _ask(channel, query, report, on_answer, limit, raw)
    report.seconds = time.perf_counter() - started
    _raise_on_failure(report)
    return report


def find_each(peer: Peer, queries: list[Query], *, on_answer: Callable | None = None, raw: bool = False) -> int:
    """Run several queries of one model, one after the other over one association; the matches in all.

    For surveys that ask the same question of many identifiers (C-GET learning the SOP
    classes it needs): one association instead of one each.
    """
    matches = 0
    with associate(peer, [_context(queries[0])]) as channel:
        for query in queries:
            report = FindReport(peer, query)
            _ask(channel, query, report, on_answer, None, raw)
            _raise_on_failure(report)
            matches += report.matches
    return matches


def _context(query: Query):
    return Proposal(query.model.find, [EXPLICIT_VR_LE, IMPLICIT_VR_LE])


def _ask(channel: Channel, query: Query, report: FindReport, on_answer, limit, raw) -> None:
    """One C-FIND over `channel`, its matches handed to `on_answer` as they come."""
    with closing(answers(channel, query, report, limit)) as stream:  # closed at once if on_answer raises
        for answer in stream:
            if on_answer is not None:
                on_answer(answer if raw else answer.dataset())


def answers(channel: Channel, query: Query, report: FindReport,
            limit: int | None = None) -> Generator[RawAnswer, None, None]:
    """One C-FIND over `channel`: its matches as they arrive (a generator; nothing accumulates).

    Closing the generator early (``break``), Ctrl-C, or reaching `limit` sends a
    C-CANCEL-RQ and drains what is in flight, bounded by :data:`CANCEL_GRACE`.
    """
    context = channel.context_for(query.model.find)
    if context is None:
        raise OperationFailed(f"{channel}: the peer refused C-FIND in the {query.model.title} model")
    syntax = TransferSyntax(context.transfer_syntax)
    identifier = _encode(query.dataset, syntax)
    message_id = channel.next_message_id()
    channel.send_encoded(context.context_id, dimse.c_find_rq(message_id, query.model.find), identifier, "C-FIND")
    finished = False
    try:
        for raw in _collect(channel, context.context_id, message_id, report, limit):
            yield RawAnswer(raw, syntax)
        finished = True
    finally:
        if not finished and channel.active:  # the consumer stopped early, or Ctrl-C
            in_flight = sys.exc_info()[1]
            if isinstance(in_flight, KeyboardInterrupt):
                interrupts.acknowledge()  # handled here: the C-CANCEL's own waits must not raise it again
            report.cancelled = True
            try:
                _cancel(channel, context.context_id, message_id)
            except DicomscuError as exc:
                if not isinstance(in_flight, KeyboardInterrupt):
                    raise
                LOGGER.info("after the interrupt: %s", exc)  # the interrupt is what the user must see


def _raise_on_failure(report: FindReport) -> None:
    if report.status is not None and report.status.category == FAILURE:
        raise OperationFailed(f"C-FIND on {report.peer} failed after {report.matches} match(es): {report.status}")


def _collect(channel: Channel, context_id: int, message_id: int, report: FindReport,
             limit: int | None) -> Iterator[bytes]:
    cancel_deadline = None  # set once we sent a C-CANCEL: the peer then gets CANCEL_GRACE to end
    while True:
        if cancel_deadline is None:
            message: Message | None = channel.receive(message_id, "C-FIND")
        elif time.monotonic() < cancel_deadline:
            message = channel.poll(cancel_deadline - time.monotonic())
        else:  # the grace is over, however fast the peer keeps answering
            message = None
        if message is None or message.command.Status is None:
            _give_up(channel, report)
            return
        response = message.command
        status = decode_status(response.Status, "find")
        if status.category != PENDING:
            report.status = status
            return
        if report.cancelled:
            continue  # in flight when we cancelled: dropped
        identifier = bytes(message.dataset) if message.dataset is not None else None
        report.matches += 1
        if identifier:
            yield identifier
        if limit is not None and report.matches >= limit:
            channel.send_encoded(context_id, dimse.c_cancel_rq(message_id), None, "C-CANCEL")
            report.cancelled = True
            cancel_deadline = time.monotonic() + CANCEL_GRACE


def _give_up(channel: Channel, report: FindReport) -> None:
    """The peer went on past the C-CANCEL's grace period: A-ABORT (PS3.7 allows nothing gentler)."""
    LOGGER.warning("%s did not end the C-FIND within %g s of our C-CANCEL: association aborted",
                   report.peer, CANCEL_GRACE)
    report.cancel_ignored = True
    channel.abort()


def _cancel(channel: Channel, context_id: int, message_id: int) -> None:
    """Ctrl-C: ask the peer to stop, and wait briefly (CANCEL_GRACE at most) for it to confirm."""
    channel.send_encoded(context_id, dimse.c_cancel_rq(message_id), None, "C-CANCEL")
    deadline = time.monotonic() + CANCEL_GRACE
    while True:  # the grace ends at its deadline, however fast the peer keeps answering
        message = channel.poll(deadline - time.monotonic()) if time.monotonic() < deadline else None
        if message is None:
            channel.abort()
            return
        if message.command.Status is not None and \
                decode_status(message.command.Status, "find").category != PENDING:
            return


def _encode(dataset: Dataset, syntax: str) -> bytes:
    from dicomscu.query.identifier import encode_identifier

    try:
        return encode_identifier(dataset, syntax)  # (a flat identifier, of retrieval keys, without pydicom)
    except Exception as exc:  # pydicom refuses a value it cannot write in this VR
        raise OperationFailed(f"the query identifier could not be encoded ({exc}; check the --key values)"
                              ) from None
