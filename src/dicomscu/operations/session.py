"""One association reused for many operations: ``with dicomscu.Association(peer) as assoc: ...``.

Each of :func:`dicomscu.echo` and :func:`dicomscu.find` opens and releases its own
association, which is what a command line wants.  A program that asks many
questions of one PACS pays that handshake once here instead::

    with dicomscu.Association(peer, query_models=["studyroot"]) as assoc:
        assoc.echo()
        for study in assoc.find(dicomscu.build_query("studyroot", "study", ["PatientID=123"])):
            print(study.StudyInstanceUID)

Association failures raise (:class:`~dicomscu.errors.DicomscuError` subclasses),
a failure status raises :class:`~dicomscu.errors.OperationFailed`: the same
contract as the one-shot functions.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Iterator, Sequence

from dicomscu.choices import ModelName
from dicomscu.errors import OperationFailed, UsageError
from dicomscu.operations.status import Status, decode
from dicomscu.protocol import commands
from dicomscu.protocol.negotiation import Proposal
from dicomscu.query.model import MODELS
from dicomscu.transport.association import associate
from dicomscu.transport.channel import Channel
from dicomscu.transport.peer import Peer
from dicomscu.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE, VERIFICATION

if TYPE_CHECKING:
    from dicomscu.operations.find import FindReport
    from dicomscu.operations.options import FindOptions


class Association:
    """An association with `peer` proposing Verification and C-FIND in each of `query_models`."""

    def __init__(self, peer: Peer, *, query_models: Sequence[ModelName] = ("studyroot",)) -> None:
        self.peer = peer
        unknown = [name for name in query_models if name not in MODELS]
        if unknown:
            raise UsageError(f"unknown query model(s) {unknown}: choose among {sorted(MODELS)}")
        self.proposals = [Proposal(VERIFICATION, [IMPLICIT_VR_LE])] + [
            Proposal(MODELS[name].find, [EXPLICIT_VR_LE, IMPLICIT_VR_LE]) for name in query_models]
        self._stack = ExitStack()
        self._channel: Channel | None = None
        self._busy = False
        #: The report of the last find (matches, status, whether a C-CANCEL went), once it has begun.
        self.last_find: "FindReport | None" = None

    def __enter__(self) -> "Association":
        self._channel = self._stack.enter_context(associate(self.peer, self.proposals))
        return self

    def __exit__(self, *exc_info) -> None:
        self._channel = None
        self._stack.__exit__(*exc_info)  # released, or aborted on an exception

    @property
    def channel(self) -> Channel:
        if self._channel is None:
            raise UsageError("the Association is not open: use it in a with block")
        if self._busy:  # a find taken part of the way: its answers are still coming on this association
            raise UsageError("an operation is still in flight on this Association (a find not read to its end): "
                             "read it to the end, or close its iterator (break out of the loop) first")
        return self._channel

    def echo(self) -> Status:
        """C-ECHO over this association; its status (a failure status raises)."""
        context = self.channel.context_for(VERIFICATION)
        if context is None:
            raise OperationFailed(f"{self.peer}: the peer refused the Verification service")
        message_id = self.channel.next_message_id()
        self.channel.send_encoded(context.context_id, commands.c_echo_rq(message_id), None, "C-ECHO")
        status = decode(self.channel.receive(message_id, "C-ECHO").command.Status, "echo")
        if not status.ok:
            raise OperationFailed(f"C-ECHO to {self.peer} answered {status}")
        return status

    def find(self, query, options: "FindOptions | None" = None, *, limit: int | None = None) -> Iterator:
        """C-FIND: each match as a pydicom Dataset, as it arrives (stop early with ``break``, or after
        `options`' or the keyword's `limit`: a C-CANCEL goes)."""
        from dicomscu.operations.find import FindReport, _raise_on_failure, answers
        from dicomscu.operations.options import FindOptions, given

        limit = given(options, FindOptions, limit=limit).limit
        report = FindReport(self.peer, query)
        self.last_find = report  # (the find's report: matches, status, whether a C-CANCEL went)
        stream = answers(self.channel, query, report, limit)
        self._busy = True
        try:
            for answer in stream:
                yield answer.dataset()
        finally:
            self._busy = False
            stream.close()  # stopped early: the C-CANCEL goes now, not when the generator is collected
        _raise_on_failure(report)
