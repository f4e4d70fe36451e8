"""serve as a Storage Commitment SCP (PS3.4 J.3, Push Model): take responsibility only for what is kept.

An N-ACTION-RQ names instances by (SOP Class, SOP Instance); it is answered at once,
then each instance is checked: indexed, of the SOP Class the request names, its file
present and whole (walked to its last element, as a retrieval would send it).  What
passes is made durable (the file and its folder fsync'd, the index's write-ahead log
synced): a C-STORE's "stored" survives a crash of serve, a commitment survives a power
cut too.
A missing instance fails with 0x0112 (no such object instance), a cut or unreadable
file with 0x0110 (processing failure), another class with 0x0119; nothing that fails
is ever reported committed.

The result (N-EVENT-REPORT) goes on the association of the request while it is open;
when the requestor has released it, aborted it or does not answer there, on a new
association to the requestor's AE title as serve's ``--dest`` table places it (the
table C-MOVE destinations use), serve proposing the SCP role (PS3.4 J.3.3).
"""

from __future__ import annotations

import logging
import mmap
import os
import time
from typing import TYPE_CHECKING, Sequence

from dicomscu.errors import DicomscuError
from dicomscu.files.probe import BadFile, probe
from dicomscu.operations.commitment import (ALL_COMMITTED, CLASS_INSTANCE_CONFLICT, NO_SUCH_INSTANCE,
                                            PROCESSING_FAILURE, REQUEST_COMMITMENT, SOME_FAILED, BadCommitment,
                                            Failure, Reference, event_information, read_action)
from dicomscu.protocol import commands as dimse
from dicomscu.protocol import pdu as pdus
from dicomscu.protocol.messages import Message
from dicomscu.protocol.negotiation import Proposal
from dicomscu.server.index import fsync
from dicomscu.transport.association import associate
from dicomscu.transport.channel import AssociationEnded, Channel
from dicomscu.transport.peer import Peer
from dicomscu.uids import EXPLICIT_VR_LE, IMPLICIT_VR_LE, STORAGE_COMMITMENT_INSTANCE, STORAGE_COMMITMENT_PUSH

if TYPE_CHECKING:
    from dicomscu.server.pacs import Pacs

LOGGER = logging.getLogger("dicomscu.server")
#: How long the requestor has to answer a result sent on its own association before it goes on a new one.
REPORT_ANSWER_WAIT = 10.0
#: Tries (and the pause before the second, doubled each time) to deliver a result on a new association.
DELIVERY_TRIES, DELIVERY_BACKOFF = 3, 0.5
SYNTAXES = (EXPLICIT_VR_LE, IMPLICIT_VR_LE)


def check(pacs: "Pacs", references: Sequence[Reference]) -> tuple[list[Reference], list[Failure]]:
    """(committed, failed) for `references`: each checked against the index and its file; the committed ones
    made durable before this returns."""
    committed: list[Reference] = []
    failed: list[Failure] = []
    folders: set[str] = set()
    for reference in references:
        reason, path, why = _problem(pacs, reference)
        if reason is None:
            try:
                fsync(path)
            except OSError as exc:
                reason, why = PROCESSING_FAILURE, f"{path}: {exc.strerror or exc}"
        if reason is not None:
            LOGGER.warning("storage commitment: %s not committed: %s: %s", reference.sop_instance,
                           Failure(reference, reason).reason_text, why)
            failed.append(Failure(reference, reason))
            continue
        folders.add(os.path.dirname(path))
        committed.append(reference)
    for folder in sorted(folders):  # the renames that put the files there
        try:
            fsync(folder)
        except OSError as exc:  # (a folder cannot go while its files are committed: logged, not failed)
            LOGGER.warning("storage commitment: cannot sync %s: %s", folder, exc.strerror or exc)
    if committed:
        pacs.index.make_durable()
    return committed, failed


def _problem(pacs: "Pacs", reference: Reference) -> tuple[int | None, str, str]:
    """(the Failure Reason, or None when the instance is kept whole; its file path; why, in words)."""
    found = pacs.index.stored_as(reference.sop_instance)
    if found is None:
        return NO_SUCH_INSTANCE, "", "not in the index"
    stored_path, sop_class = found
    if reference.sop_class and reference.sop_class != sop_class:
        return CLASS_INSTANCE_CONFLICT, "", f"stored as {sop_class}, asked as {reference.sop_class}"
    path = pacs.resolve(stored_path)
    try:
        info = _probed(path)
    except FileNotFoundError:
        return NO_SUCH_INSTANCE, path, f"indexed, but its file {path} is gone"
    except OSError as exc:
        return PROCESSING_FAILURE, path, f"{path}: {exc.strerror or exc}"
    if isinstance(info, str):
        return PROCESSING_FAILURE, path, f"{path}: {info}"
    if (info.sop_instance, info.sop_class) != (reference.sop_instance, sop_class):
        return PROCESSING_FAILURE, path, f"{path} holds {info.sop_instance}, not {reference.sop_instance}"
    return None, path, ""


def _probed(path: str):
    """The stored file walked whole through a memory map (a slide of gigabytes costs no memory), or why it is
    not whole (a string: the probe's exception is dropped here, with the views it holds into the map)."""
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return "empty file (0 bytes)"
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            problem = None
            try:
                return probe(mapped)  # type: ignore[arg-type]  # (a buffer) walks the whole data set: a cut or corrupt file raises
            except BadFile as exc:
                problem = str(exc)
            return problem


def answer_action(pacs: "Pacs", channel: Channel, message: Message) -> None:
    """Handle one N-ACTION-RQ: answer it, check its instances, deliver the result."""
    request = message.command
    context = channel.context_for_id(message.context_id)
    status, comment, asked = _read_request(message, context)
    channel.send_encoded(message.context_id,
                         dimse.n_action_rsp(request.MessageID or 0, request.RequestedSOPClassUID or "",
                                            request.RequestedSOPInstanceUID or "", status, request.ActionTypeID,
                                            comment), None, "N-ACTION-RSP")
    if asked is None:
        return
    transaction, references = asked
    committed, failed = check(pacs, references)
    LOGGER.info("storage commitment %s for %s: %d committed, %d failed", transaction, channel, len(committed),
                len(failed))
    event_type = SOME_FAILED if failed else ALL_COMMITTED
    calling_ae = channel.name.split("@")[0]
    try:
        if _report_on(channel, context, transaction, committed, failed, event_type):
            return
    except AssociationEnded:
        channel.release()  # answered first: the requestor is waiting for it
        _deliver(pacs, calling_ae, transaction, committed, failed, event_type)
        raise
    except DicomscuError:
        _deliver(pacs, calling_ae, transaction, committed, failed, event_type)
        raise
    _deliver(pacs, calling_ae, transaction, committed, failed, event_type)


def _read_request(message: Message, context) -> tuple[int, str | None, tuple[str, tuple[Reference, ...]] | None]:
    """(N-ACTION status, error comment, (transaction, references) when it is to be done)."""
    request = message.command
    if context.abstract_syntax != STORAGE_COMMITMENT_PUSH or request.RequestedSOPClassUID != STORAGE_COMMITMENT_PUSH:
        return 0x0122, "not a Storage Commitment Push Model request", None
    if request.RequestedSOPInstanceUID != STORAGE_COMMITMENT_INSTANCE:
        return 0x0117, f"the SOP Instance is {STORAGE_COMMITMENT_INSTANCE} (PS3.4 J.3.5)", None
    if request.ActionTypeID != REQUEST_COMMITMENT:
        return 0x0123, f"no such action type {request.ActionTypeID}", None
    if message.dataset is None:
        return 0x0120, "the action information is missing", None
    try:
        action = read_action(message.dataset, context.transfer_syntax)
    except BadCommitment as exc:
        LOGGER.warning("storage commitment request refused: %s", exc)
        return 0x0120 if exc.missing else 0x0110, str(exc)[:64], None
    return 0x0000, None, (action.transaction, action.references)


def _send_report(channel: Channel, context_id: int, syntax: str, transaction: str, committed, failed,
                 event_type: int) -> int:
    message_id = channel.next_message_id()
    channel.send_encoded(context_id, dimse.n_event_report_rq(message_id, STORAGE_COMMITMENT_PUSH,
                                                             STORAGE_COMMITMENT_INSTANCE, event_type),
                         event_information(transaction, committed, failed, syntax), "N-EVENT-REPORT")
    return message_id


def _report_on(channel: Channel, context, transaction: str, committed, failed, event_type: int) -> bool:
    """The result sent on the request's association; True when the requestor answered it.  Requests that
    come meanwhile wait their turn (:meth:`Channel.defer`)."""
    if not channel.active:
        return False
    message_id = _send_report(channel, context.context_id, context.transfer_syntax, transaction, committed, failed,
                              event_type)
    deadline = time.monotonic() + REPORT_ANSWER_WAIT
    while True:
        message = channel.poll(deadline - time.monotonic(), fresh=True)
        if message is None:
            LOGGER.warning("%s: no answer to the storage commitment result %s within %g s", channel, transaction,
                           REPORT_ANSWER_WAIT)
            return False
        command = message.command
        if command.CommandField == dimse.N_EVENT_REPORT_RSP and command.MessageIDBeingRespondedTo == message_id:
            if command.Status not in (0x0000, None):
                LOGGER.warning("%s: the requestor answered the storage commitment result %s with 0x%04X",
                               channel, transaction, command.Status)
            return True
        if command.is_response:
            LOGGER.warning("%s: unexpected %s: ignored", channel, command.name)
        else:
            channel.defer(message)


def _deliver(pacs: "Pacs", calling_ae: str, transaction: str, committed, failed, event_type: int) -> bool:
    """The result on a new association to `calling_ae`, placed by ``--dest``; logged either way."""
    destination = pacs.config.destinations.get(calling_ae)
    if destination is None:
        LOGGER.error("storage commitment result %s not delivered: %s closed its association, and --dest does not "
                     "say where %s listens (give --dest %s=HOST:PORT)", transaction, calling_ae, calling_ae,
                     calling_ae)
        return False
    peer = Peer(destination[0], destination[1], called_ae=calling_ae, calling_ae=pacs.config.aetitle)
    role = pdus.RoleSelection(STORAGE_COMMITMENT_PUSH, scu=False, scp=True)
    for attempt in range(DELIVERY_TRIES):
        if attempt:
            time.sleep(DELIVERY_BACKOFF * 2 ** (attempt - 1))
        try:
            with associate(peer, [Proposal(STORAGE_COMMITMENT_PUSH, SYNTAXES)], roles=[role]) as target:
                context = target.context_for(STORAGE_COMMITMENT_PUSH)
                if context is None:  # pragma: no cover - associate() refuses that
                    break
                message_id = _send_report(target, context.context_id, context.transfer_syntax, transaction,
                                          committed, failed, event_type)
                status = target.receive(message_id, "N-EVENT-REPORT").command.Status
            LOGGER.info("storage commitment result %s delivered to %s (status 0x%04X)", transaction, peer,
                        status or 0)
            return True
        except DicomscuError as exc:
            LOGGER.warning("storage commitment result %s: delivery to %s failed: %s", transaction, peer, exc)
    LOGGER.error("storage commitment result %s not delivered to %s after %d tries", transaction, peer,
                 DELIVERY_TRIES)
    return False
