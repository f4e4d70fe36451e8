"""Storage Commitment SCU: ask the peer to take responsibility for instances, and wait for its answer.

The sequence (PS3.4 J.3, Push Model):

1. **Ask** — the instances go in requests of :data:`~dicomscu.operations.options.COMMIT_BATCH`, one N-ACTION each
   with its own Transaction UID; each is answered at once by an N-ACTION-RSP, which
   only says the peer will look.
2. **Wait** — the results come as N-EVENT-REPORTs, on our association while it is
   open, or on an association the peer opens back to us (``port_scp``: we listen there
   under our calling AE title, as for C-MOVE), which is what Orthanc does.  Each report
   is matched to its request by Transaction UID, whichever way and whenever it comes
   within `timeout`; a report that arrives while we wait for an N-ACTION-RSP is answered
   and kept.  Our association is kept while reports come on it; when a listener is
   there too, it is released after :data:`QUIET_ON_ASSOCIATION` seconds without one
   (some archives report only after the requestor has gone).
3. **Report** — :class:`CommitReport`: committed, failed (each with its Failure
   Reason) and unanswered instances.  Only a committed instance may be deleted at the
   source; the journal (``--journal``) records each, so a later run asks only for the rest.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

from dicomscu.errors import AssociationAborted, DicomscuError, OperationFailed, UsageError
from dicomscu.files.inputs import InputProblem, Paths, as_paths, expand
from dicomscu.files.probe import BadFile, probe_head
from dicomscu.operations.commitment import (ALL_COMMITTED, REQUEST_COMMITMENT, SOME_FAILED, BadCommitment,
                                            EventReport, Failure, Reference, action_information, read_event)
from dicomscu.operations.options import COMMIT_BATCH, COMMIT_TIMEOUT, CommitOptions, given
from dicomscu.operations.provider import Provider
from dicomscu.operations.status import Status, decode
from dicomscu.protocol import commands as dimse
from dicomscu.protocol.messages import Message
from dicomscu.protocol.negotiation import Proposal
from dicomscu.transport.association import associate
from dicomscu.transport.channel import AssociationEnded, Channel
from dicomscu.transport.peer import Peer
from dicomscu.uids import (EXPLICIT_VR_LE, IMPLICIT_VR_LE, STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH,
                           new_uid)

LOGGER = logging.getLogger("dicomscu.commit")

#: With a listener for reports, our association is released after this long without a report on it.
QUIET_ON_ASSOCIATION = 2.0
SYNTAXES = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)


@dataclass
class CommitReport:
    """What the peer said about each instance it was asked to commit."""

    peer: Peer
    requested: int = 0
    committed: list[Reference] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    #: Asked for, and no result came within the timeout (or the request itself was refused: see `refused`).
    unanswered: list[Reference] = field(default_factory=list)
    #: Committed in an earlier run, as the journal says: not asked for again.
    already: int = 0
    #: Requests the peer refused outright (N-ACTION-RSP failure status): their instances are unanswered.
    refused: list[Status] = field(default_factory=list)
    transactions: list[str] = field(default_factory=list)
    #: Results that came on an association the peer opened back to us.
    reports_on_new_association: int = 0
    seconds: float = 0.0
    #: The association failure that stopped the run, if any.
    error: DicomscuError | None = None

    @property
    def ok(self) -> bool:
        """Every instance asked for is committed (nothing failed, nothing left unanswered)."""
        return self.error is None and not self.failed and not self.unanswered


class _Transactions:
    """The requests sent and not yet answered, by Transaction UID; shared with the listener's thread."""

    def __init__(self, report: CommitReport, on_report: Callable[[EventReport], None] | None) -> None:
        self.report = report
        self.on_report = on_report
        self.pending: dict[str, list[Reference]] = {}
        self.changed = threading.Condition()

    def add(self, transaction: str, references: list[Reference]) -> None:
        with self.changed:
            self.pending[transaction] = references
            self.report.transactions.append(transaction)

    def drop(self, transaction: str) -> list[Reference]:
        with self.changed:
            return self.pending.pop(transaction, [])

    def answer(self, event: EventReport, on_new_association: bool) -> bool:
        """Take a result; False when it answers no request of this run."""
        with self.changed:
            asked = self.pending.pop(event.transaction, None)
            if asked is None:
                return False
            asked_for = set(asked)
            committed = [ref for ref in event.committed if ref in asked_for]
            failed = [failure for failure in event.failed if failure.reference in asked_for]
            stray = len(event.committed) + len(event.failed) - len(committed) - len(failed)
            if stray:
                LOGGER.warning("the result of transaction %s names %d instance(s) it did not ask for: ignored",
                               event.transaction, stray)
            told = {ref for ref in committed} | {failure.reference for failure in failed}
            self.report.committed += committed
            self.report.failed += failed
            self.report.unanswered += [ref for ref in asked if ref not in told]
            self.report.reports_on_new_association += on_new_association
            self.changed.notify_all()
        LOGGER.info("storage commitment result for transaction %s (%s): %d committed, %d failed, %d not named",
                    event.transaction, "on an association of the peer's" if on_new_association else
                    "on our association", len(committed), len(failed), len(asked) - len(told))
        if self.on_report is not None:
            self.on_report(EventReport(event.transaction, tuple(committed), tuple(failed)))
        return True

    def waiting(self) -> int:
        with self.changed:
            return len(self.pending)

    def wait(self, seconds: float) -> None:
        with self.changed:
            if self.pending:
                self.changed.wait(seconds)


class _ReportReceiver(Provider):
    """Answers the N-EVENT-REPORT-RQs of Storage Commitment (on our association, or on one the peer opened)."""

    def __init__(self, transactions: _Transactions, on_new_association: bool) -> None:
        super().__init__()
        self.transactions = transactions
        self.on_new_association = on_new_association
        self.handlers[dimse.N_EVENT_REPORT_RQ] = self.event_report

    def event_report(self, channel: Channel, message: Message) -> None:
        request = message.command
        context = channel.context_for_id(message.context_id)
        status, comment = 0x0000, None
        if context.abstract_syntax != STORAGE_COMMITMENT_PUSH or request.AffectedSOPClassUID != STORAGE_COMMITMENT_PUSH:
            status, comment = 0x0122, "only Storage Commitment Push Model results are received here"
        elif request.EventTypeID not in (ALL_COMMITTED, SOME_FAILED):
            status, comment = 0x0113, f"no such event type {request.EventTypeID}"
        elif message.dataset is None:
            status, comment = 0x0120, "the event information is missing"
        else:
            try:
                event = read_event(message.dataset, context.transfer_syntax)
            except BadCommitment as exc:
                LOGGER.warning("%s: a storage commitment result we cannot read: %s", channel, exc)
                status, comment = (0x0120 if exc.missing else 0x0110), str(exc)[:64]
            else:
                if not self.transactions.answer(event, self.on_new_association):
                    LOGGER.warning("%s: a storage commitment result for transaction %s, which this run did not "
                                   "ask for: ignored", channel, event.transaction)
        channel.send_encoded(message.context_id,
                             dimse.n_event_report_rsp(request.MessageID or 0, request.AffectedSOPClassUID or "",
                                                      request.AffectedSOPInstanceUID or "", status,
                                                      request.EventTypeID, comment),
                             None, "N-EVENT-REPORT-RSP")


def references_in(paths: Paths, recursive: bool = False,
                  on_problem: Callable[[str, str], None] | None = None) -> Iterator[Reference]:
    """(SOP Class, SOP Instance) of each DICOM file among `paths`, read from its head; a file that is not one
    goes to ``on_problem(path, reason)``.  The data set's UIDs win over the file meta's."""
    for entry in expand(as_paths(paths), recursive):
        if isinstance(entry, InputProblem):
            if on_problem:
                on_problem(entry.path, entry.reason)
            continue
        try:
            info = probe_head(entry)
        except OSError as exc:
            if on_problem:
                on_problem(entry, f"cannot read: {exc.strerror or exc}")
            continue
        except BadFile as exc:
            if on_problem:
                on_problem(entry, str(exc))
            continue
        yield Reference(info.sop_class, info.sop_instance)


def commit(peer: Peer, instances: Iterable[Reference], options: CommitOptions | None = None, *,
           port_scp: int | None = None, timeout: float | None = None, batch: int | None = None, journal=None,
           root_uid: str | None = None, on_report: Callable[[EventReport], None] | None = None) -> CommitReport:
    """Ask `peer` to commit `instances` ((SOP Class, SOP Instance) pairs: :class:`Reference`) and wait up to
    ``options.timeout`` s for its results.

    `options` (:class:`~dicomscu.operations.options.CommitOptions`), or the same fields as keywords:
    `port_scp` listens for results sent on an association the peer opens back to us (its AE table must
    know our calling AE title at this port).  `journal` (a :class:`~dicomscu.files.journal.Journal` or the path
    of one, as for :func:`~dicomscu.operations.store.store`) skips instances committed in an earlier run and
    records those committed now.  Association failures are kept in
    ``report.error`` with what was learned before them; a peer without Storage Commitment raises
    :class:`~dicomscu.errors.OperationFailed`.
    """
    options = given(options, CommitOptions, port_scp=port_scp, timeout=timeout, batch=batch, journal=journal,
                    root_uid=root_uid)
    if isinstance(options.journal, (str, os.PathLike)):
        from dicomscu.files.journal import journal_for

        with journal_for(options.journal, peer) as opened:
            return commit(peer, instances, dataclasses.replace(options, journal=opened), on_report=on_report)
    journal = options.journal
    started = time.perf_counter()
    report = CommitReport(peer)
    wanted: list[Reference] = []
    seen: set[str] = set()
    for reference in instances:
        if not isinstance(reference, tuple) or len(reference) != 2:
            raise UsageError(f"{reference!r}: an instance is a (SOP Class UID, SOP Instance UID) pair")
        reference = Reference(str(reference[0]), str(reference[1]))
        if reference.sop_instance in seen:
            continue
        seen.add(reference.sop_instance)
        if journal is not None and journal.is_committed(reference.sop_instance):
            report.already += 1
            continue
        wanted.append(reference)
    report.requested = len(wanted)

    def recorded(event: EventReport) -> None:
        if journal is not None and event.committed:
            journal.record_commitment(event.committed)
        if on_report is not None:
            on_report(event)

    transactions = _Transactions(report, recorded)
    if wanted:
        try:
            _run(peer, wanted, transactions, options.port_scp, options.timeout, options.batch, options.root_uid)
        except DicomscuError as exc:
            if isinstance(exc, (UsageError, OperationFailed)):
                raise
            report.error = exc
    for transaction in list(transactions.pending):
        report.unanswered += transactions.drop(transaction)
    told = set(report.committed) | {failure.reference for failure in report.failed} | set(report.unanswered)
    report.unanswered += [reference for reference in wanted if reference not in told]  # never asked: stopped
    report.seconds = time.perf_counter() - started
    return report


def _run(peer: Peer, wanted: list[Reference], transactions: _Transactions, port_scp: int | None, timeout: float,
         batch: int, root_uid: str | None) -> None:
    from dicomscu.operations.scp import IncomingSCP

    receiver = _ReportReceiver(transactions, on_new_association=False)
    with ExitStack() as stack:
        if port_scp is not None:
            stack.enter_context(IncomingSCP(peer.calling_ae, port_scp, {STORAGE_COMMITMENT_PUSH: SYNTAXES},
                                            _ReportReceiver(transactions, on_new_association=True).serve,
                                            roles_allowed=[STORAGE_COMMITMENT_PUSH]))
        channel = stack.enter_context(associate(peer, [Proposal(STORAGE_COMMITMENT_PUSH, SYNTAXES)]))
        context = channel.context_for(STORAGE_COMMITMENT_PUSH)
        if context is None:  # pragma: no cover - associate() refuses an association with no accepted context
            raise OperationFailed(f"{peer}: the peer does not support Storage Commitment")
        open_ = True
        for start in range(0, len(wanted), batch):
            chunk = wanted[start: start + batch]
            transaction = new_uid(root_uid)
            transactions.add(transaction, chunk)
            message_id = channel.next_message_id()
            channel.send_encoded(context.context_id,
                                 dimse.n_action_rq(message_id, STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_INSTANCE,
                                                   REQUEST_COMMITMENT),
                                 action_information(transaction, chunk, context.transfer_syntax), "N-ACTION")
            try:
                status = _action_answer(channel, message_id, receiver)
            except AssociationEnded:
                channel.release()
                open_ = False
                LOGGER.warning("%s: the peer released the association before answering the request for "
                               "commitment of %d instance(s)", peer, len(chunk))
                break
            if status.ok:
                LOGGER.info("%s: asked to commit %d instance(s) in transaction %s: %s", peer, len(chunk),
                            transaction, status)
            else:
                LOGGER.error("%s: the request for commitment of %d instance(s) was refused: %s", peer, len(chunk),
                             status)
                transactions.report.refused.append(status)
                transactions.report.unanswered += transactions.drop(transaction)
        deadline = time.monotonic() + timeout
        last_heard = time.monotonic()
        while transactions.waiting() and time.monotonic() < deadline:
            if not open_:
                if port_scp is None:
                    break  # nobody can answer any more
                transactions.wait(min(0.25, max(deadline - time.monotonic(), 0.0)))
                continue
            if port_scp is not None and time.monotonic() - last_heard > QUIET_ON_ASSOCIATION:
                channel.release()  # results may come on the association the peer opens back to us
                open_ = False
                continue
            try:
                message = channel.poll(min(0.25, max(deadline - time.monotonic(), 0.0)))
            except AssociationEnded:
                channel.release()
                open_ = False
                continue
            if message is not None:
                receiver.handle(channel, message)
                last_heard = time.monotonic()


def _action_answer(channel: Channel, message_id: int, receiver: _ReportReceiver) -> Status:
    """The status of the N-ACTION-RSP to `message_id`; results (N-EVENT-REPORTs) that come first are answered."""
    while True:
        message = channel.receive_any("N-ACTION")
        command = message.command
        if command.CommandField == dimse.N_ACTION_RSP and command.MessageIDBeingRespondedTo == message_id:
            return decode(command.Status if command.Status is not None else 0xC000, "commit")
        if not command.is_response:  # the peer's own request (a result, on this association): answered now
            receiver.handle(channel, message)
            continue
        channel.abort()
        raise AssociationAborted(f"{channel}: the peer sent a {command.name} answering message "
                                 f"{command.MessageIDBeingRespondedTo} while we waited for the N-ACTION response "
                                 f"to message {message_id} (protocol error)")
