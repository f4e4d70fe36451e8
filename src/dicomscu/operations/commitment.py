"""Storage Commitment Push Model (PS3.4 Annex J): what its two messages say, for the SCU and the SCP alike.

The SCU asks with an N-ACTION (Action Type 1, "Request Storage Commitment") whose
action information is a Transaction UID and the Referenced SOP Sequence of the
instances it wants the archive to take responsibility for (PS3.4 J.3.2.1.1).  The SCP
answers that request at once (N-ACTION-RSP: "I will look") and later gives the result
in an N-EVENT-REPORT: Event Type 1 when every instance is committed, 2 when some
failed, with the same Transaction UID, the committed instances in the Referenced SOP
Sequence and the others in the Failed SOP Sequence, each with its Failure Reason
(PS3.4 J.3.3.1).  The report may come on the association of the request or on one the
SCP opens back to the SCU; the Transaction UID is what ties it to its request.

Both sides use :func:`action_information` / :func:`read_action` and
:func:`event_information` / :func:`read_event` here, so that what one writes the other reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence

from dicomscu.files.codec import decode, encode

#: N-ACTION Action Type ID: Request Storage Commitment (PS3.4 Table J.3-1).
REQUEST_COMMITMENT = 1
#: N-EVENT-REPORT Event Type IDs (PS3.4 Table J.3-2).
ALL_COMMITTED, SOME_FAILED = 1, 2
#: Failure Reason (0008,1197) values (PS3.4 J.3.3.1.1), and what they mean in words.
PROCESSING_FAILURE = 0x0110
NO_SUCH_INSTANCE = 0x0112
RESOURCE_LIMITATION = 0x0213
CLASS_NOT_SUPPORTED = 0x0122
CLASS_INSTANCE_CONFLICT = 0x0119
DUPLICATE_TRANSACTION = 0x0131
FAILURE_REASONS = {
    PROCESSING_FAILURE: "processing failure",
    NO_SUCH_INSTANCE: "no such object instance",
    RESOURCE_LIMITATION: "resource limitation",
    CLASS_NOT_SUPPORTED: "referenced SOP Class not supported",
    CLASS_INSTANCE_CONFLICT: "SOP Class / Instance conflict",
    DUPLICATE_TRANSACTION: "duplicate transaction UID",
}


class Reference(NamedTuple):
    """One instance, as Storage Commitment names it: (SOP Class UID, SOP Instance UID)."""

    sop_class: str
    sop_instance: str


class Failure(NamedTuple):
    """An instance the SCP did not commit, and why (a Failure Reason)."""

    reference: Reference
    reason: int

    @property
    def reason_text(self) -> str:
        return describe_reason(self.reason)


def describe_reason(reason: int | None) -> str:
    if reason is None:
        return "no failure reason given"
    text = FAILURE_REASONS.get(reason, "failure reason not in PS3.4")
    return f"{text} (0x{reason:04X})"


@dataclass(frozen=True)
class ActionRequest:
    """A request for commitment as read from an N-ACTION's action information."""

    transaction: str
    references: tuple[Reference, ...]


@dataclass(frozen=True)
class EventReport:
    """A commitment result as read from an N-EVENT-REPORT's event information."""

    transaction: str
    committed: tuple[Reference, ...]
    failed: tuple[Failure, ...]


class BadCommitment(ValueError):
    """An action or event information data set that does not say what PS3.4 J.3 requires; `missing` when an
    attribute it requires is absent (status 0x0120), else unreadable (0x0110)."""

    def __init__(self, text: str, missing: bool = False) -> None:
        super().__init__(text)
        self.missing = missing


def _items(references: Iterable[Reference]):
    from pydicom.dataset import Dataset

    for reference in references:
        item = Dataset()
        item.ReferencedSOPClassUID = reference.sop_class
        item.ReferencedSOPInstanceUID = reference.sop_instance
        yield item


def action_information(transaction: str, references: Sequence[Reference], syntax: str) -> bytes:
    """The N-ACTION-RQ data set asking for commitment of `references` (PS3.4 Table J.3-1), encoded."""
    from pydicom.dataset import Dataset

    dataset = Dataset()
    dataset.TransactionUID = transaction
    dataset.ReferencedSOPSequence = list(_items(references))
    return encode(dataset, syntax)


def event_information(transaction: str, committed: Sequence[Reference], failed: Sequence[Failure],
                      syntax: str) -> bytes:
    """The N-EVENT-REPORT-RQ data set of a result (PS3.4 Table J.3-2), encoded; an empty sequence is left out
    (the standard makes each present only when it has items)."""
    from pydicom.dataset import Dataset

    dataset = Dataset()
    dataset.TransactionUID = transaction
    if committed:
        dataset.ReferencedSOPSequence = list(_items(committed))
    if failed:
        items = []
        for failure, item in zip(failed, _items(f.reference for f in failed)):
            item.FailureReason = failure.reason
            items.append(item)
        dataset.FailedSOPSequence = items
    return encode(dataset, syntax)


def _references(dataset, keyword: str) -> list:
    sequence = dataset.get(keyword)
    if sequence is None:
        return []
    found = []
    for number, item in enumerate(sequence, 1):
        sop_class = str(item.get("ReferencedSOPClassUID", "") or "").strip()
        sop_instance = str(item.get("ReferencedSOPInstanceUID", "") or "").strip()
        if not sop_instance:
            raise BadCommitment(f"item {number} of the {keyword} has no Referenced SOP Instance UID",
                                missing=True)
        found.append((Reference(sop_class, sop_instance), item))
    return found


def _transaction(dataset) -> str:
    transaction = str(dataset.get("TransactionUID", "") or "").strip()
    if not transaction:
        raise BadCommitment("no Transaction UID (0008,1195)", missing=True)
    return transaction


def _decoded(raw, syntax: str):
    """The data set, proven whole first (pydicom reads a data set cut mid-element as a shorter one)."""
    from dicomscu.files.probe import BadFile, top_level_values

    try:
        top_level_values(raw, syntax, [])
    except BadFile as exc:
        raise BadCommitment(f"a broken data set: {exc}") from None
    try:
        return decode(raw, syntax)
    except Exception as exc:  # pydicom raises many kinds on malformed bytes
        raise BadCommitment(f"undecodable data set: {exc}") from None


def read_action(raw, syntax: str) -> ActionRequest:
    """The request in an N-ACTION-RQ's data set; BadCommitment when it lacks what PS3.4 Table J.3-1 requires."""
    dataset = _decoded(raw, syntax)
    try:
        transaction = _transaction(dataset)
        if "ReferencedSOPSequence" not in dataset:
            raise BadCommitment("no Referenced SOP Sequence (0008,1199)", missing=True)
        references = tuple(reference for reference, _ in _references(dataset, "ReferencedSOPSequence"))
    except BadCommitment:
        raise
    except Exception as exc:  # a value pydicom cannot read as its VR
        raise BadCommitment(f"unreadable action information: {exc}") from None
    return ActionRequest(transaction, references)


def read_event(raw, syntax: str) -> EventReport:
    """The result in an N-EVENT-REPORT-RQ's data set (PS3.4 Table J.3-2)."""
    dataset = _decoded(raw, syntax)
    try:
        transaction = _transaction(dataset)
        committed = tuple(reference for reference, _ in _references(dataset, "ReferencedSOPSequence"))
        failed = []
        for reference, item in _references(dataset, "FailedSOPSequence"):
            reason = item.get("FailureReason")
            failed.append(Failure(reference, int(reason) if reason is not None else PROCESSING_FAILURE))
    except BadCommitment:
        raise
    except Exception as exc:
        raise BadCommitment(f"unreadable event information: {exc}") from None
    return EventReport(transaction, committed, tuple(failed))
