"""C-STORE: send files and directories to a peer, many files per association.

The sequence:

1. **Plan** — read the head of every file once to learn which (SOP Class,
   Transfer Syntax) pairs are needed, and propose exactly those contexts (plus an
   Implicit VR Little Endian fallback per SOP class for uncompressed data).
   More than 128 contexts (the PS3.8 limit) are split over several associations.
2. **Send** — walk the inputs again, streaming: each file is read, proven whole
   (:func:`dicomscu.files.probe.probe`), and its data set bytes are sent as they
   are when the peer accepted its transfer syntax; re-encoded by pydicom only
   when it accepted another uncompressed one.  Memory does not grow with the
   number of files.
3. **Report** — every file gives one :class:`FileResult`; bad files are
   reported and skipped, the rest still goes.  :class:`StoreReport` has the
   counts, bytes and time.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable, Sequence

from dicomscu.errors import AssociationAborted, AssociationRejected, ConnectionFailed, DicomscuError
from dicomscu.files.inputs import InputProblem, Paths, as_paths, expand
from dicomscu.files.probe import BadFile, DicomFile, probe, probe_head
from dicomscu.files.sending import offered_to, payload, syntax_to_send
from dicomscu.operations.options import JournalLike, StoreOptions, given
from dicomscu.operations.status import SUCCESS, WARNING, decode
from dicomscu.operations.fanout import fan_out
from dicomscu.operations.results import ALREADY, FAILED, OK, SKIPPED, WARNED, FileResult, StoreReport, recorder
from dicomscu.protocol import commands as dimse
from dicomscu.protocol.negotiation import Proposal
from dicomscu.transport.association import associate
from dicomscu.transport.channel import Channel
from dicomscu.transport.peer import Peer
from dicomscu.uids import (
    CONVERTIBLE_SYNTAXES,
    EXPLICIT_VR_LE as ExplicitVRLittleEndian,
    IMPLICIT_VR_LE as ImplicitVRLittleEndian,
)

#: PS3.8 9.3.2.2: at most 128 presentation contexts (odd IDs 1..255) per association.
MAX_CONTEXTS = 128
CONVERTIBLE = frozenset(CONVERTIBLE_SYNTAXES)
#: After the peer aborts or drops the association: reopen it (up to 3 tries, 0.5 s then 1 s backoff),
#: but stop after 3 files in a row lost that way (a peer that aborts on everything).
MAX_REOPEN_TRIES = 3
REOPEN_BACKOFF = 0.5
MAX_LOST_IN_A_ROW = 3

@dataclass
class _Group:
    """One association's worth of presentation contexts."""

    contexts: list[Proposal]
    pairs: set[tuple[str, str]]


@dataclass
class Plan:
    files: int
    bytes: int
    groups: list[_Group]
    #: Every input found, sendable or not (the total of the summary).
    inputs: int = 0


def plan(paths: Sequence[str], recursive: bool = False) -> Plan:
    """First pass: the contexts needed by the readable DICOM files among `paths`."""
    pairs: Counter = Counter()
    total_bytes = 0
    inputs = 0
    for entry in expand(paths, recursive):
        inputs += 1
        if isinstance(entry, InputProblem):
            continue
        try:
            info = probe_head(entry)
            total_bytes += os.stat(entry).st_size
        except (OSError, BadFile):
            continue  # reported by the sending pass, once
        pairs[(info.sop_class, info.transfer_syntax)] += 1
    return Plan(sum(pairs.values()), total_bytes, _group_contexts(pairs), inputs)


def _group_contexts(pairs: Counter) -> list[_Group]:
    by_class: dict[str, list[str]] = {}
    for sop_class, syntax in sorted(pairs):
        by_class.setdefault(sop_class, []).append(syntax)
    groups: list[_Group] = []
    for sop_class, syntaxes in by_class.items():
        wanted = list(syntaxes)
        # Fallbacks for re-encoded or decompressed data sets: Explicit VR LE where something may need
        # decompressing (private VRs survive it), and Implicit VR LE, which every SCP must accept.
        if any(syntax not in CONVERTIBLE for syntax in syntaxes) and ExplicitVRLittleEndian not in wanted:
            wanted.append(ExplicitVRLittleEndian)
        if ImplicitVRLittleEndian not in wanted:
            wanted.append(ImplicitVRLittleEndian)
        contexts = [Proposal(sop_class, [syntax]) for syntax in wanted]
        if not groups or len(groups[-1].contexts) + len(contexts) > MAX_CONTEXTS:
            groups.append(_Group([], set()))
        group = groups[-1]
        group.contexts.extend(contexts)
        for syntax in syntaxes:
            group.pairs.add((sop_class, syntax))
    return groups


def store(
    peer: Peer,
    paths: Paths,
    options: StoreOptions | None = None,
    *,
    on_plan: Callable[[Plan], None] | None = None,
    on_result: Callable[[FileResult], object] | None = None,
    recursive: bool | None = None,
    decompress: bool | None = None,
    jobs: int | None = None,
    journal: JournalLike = None,
    commit: bool | None = None,
    commit_timeout: float | None = None,
    port_scp: int | None = None,
) -> StoreReport:
    """Send the DICOM files among `paths` (files and directories) to `peer`.

    How is `options` (:class:`~dicomscu.operations.options.StoreOptions`, the command line's too), or its
    fields as keywords (``recursive=True, jobs=4``), which override those of `options`.

    With ``commit``, the peer is then asked to take responsibility for every instance it stored (storage
    commitment, :func:`dicomscu.operations.commit.commit`, its results awaited up to ``commit_timeout`` s, on
    our association or at ``port_scp``): ``report.commitment`` says what it committed, and ``report.ok``
    requires every instance committed.

    Problems with single files never stop the run: they are reported through
    `on_result` and counted.  A compressed file whose transfer syntax the peer
    refuses is decompressed (when pydicom has a decoder for it); ``decompress``
    sends every compressed file uncompressed.  An association that cannot be opened or is lost is
    recorded in ``report.error``; files it could not carry count as ``not_sent``.  ``journal`` is a
    :class:`~dicomscu.files.journal.Journal` or the path of one (opened for this peer: another peer's is
    refused).
    """
    options = given(options, StoreOptions, recursive=recursive, decompress=decompress, jobs=jobs, journal=journal,
                    commit=commit, commit_timeout=commit_timeout, port_scp=port_scp)
    paths = as_paths(paths)
    if isinstance(options.journal, (str, os.PathLike)):
        from dicomscu.files.journal import journal_for

        with journal_for(options.journal, peer) as opened:
            return store(peer, paths, dataclasses.replace(options, journal=opened), on_plan=on_plan,
                         on_result=on_result)
    if options.commit:
        return _store_and_commit(peer, paths, options, on_plan, on_result)
    recursive, decompress, journal = options.recursive, options.decompress, options.journal
    if options.jobs > 1:
        return _store_in_parallel(peer, paths, recursive, on_plan, on_result, decompress, options.jobs, journal)
    started = time.perf_counter()
    the_plan = plan(paths, recursive)
    report = StoreReport(peer, the_plan.files, the_plan.bytes)
    if on_plan:
        on_plan(the_plan)

    emit = recorder(report, journal, on_result)

    planned_pairs = set().union(*(g.pairs for g in the_plan.groups)) if the_plan.groups else set()
    if not the_plan.groups:  # nothing sendable: still report every bad input once
        for entry in expand(paths, recursive):
            _report_unsendable(entry, emit)
    for index, group in enumerate(the_plan.groups):
        with _LazyAssociation(peer, group.contexts, decompress) as link:
            for entry in expand(paths, recursive):
                loaded = load_input(entry)
                if isinstance(loaded, FileResult):
                    if index == 0:
                        emit(loaded)
                    continue
                path, data, info = loaded
                pair = (info.sop_class, info.transfer_syntax)
                if pair not in group.pairs:
                    if index == 0 and pair not in planned_pairs:
                        emit(FileResult(path, FAILED, "file changed while dicomscu was running; not sent",
                                        sop_instance=info.sop_instance))
                    continue
                if journal is not None and info.sop_instance in journal:
                    emit(FileResult(path, ALREADY, "already stored (journal)", sop_instance=info.sop_instance,
                                        sop_class=info.sop_class))
                    continue
                results = link.send(path, data, info)
                if results is None:  # no association could be (re)opened: the rest of the group stays
                    break
                for result in results:
                    emit(result)
            for result in link.finish():  # the responses still outstanding (an asynchronous window)
                emit(result)
        if link.error is not None:
            report.error = report.error or link.error
    # every input given ends in exactly one count: what no association carried is "not sent"
    report.not_sent = max(the_plan.inputs - sum(report.counts.values()), 0)
    report.seconds = time.perf_counter() - started
    return report


def _store_and_commit(peer: Peer, paths: list[str], options: StoreOptions, on_plan, on_result) -> StoreReport:
    """Store, then ask for commitment of every instance the peer holds now (stored, or already per journal)."""
    from dicomscu.operations.commit import commit as request_commitment
    from dicomscu.operations.commitment import Reference

    kept: list[Reference] = []

    def collect(result: FileResult) -> None:
        if result.outcome in (OK, WARNED, ALREADY) and result.sop_class:
            kept.append(Reference(result.sop_class, result.sop_instance))
        if on_result:
            on_result(result)

    report = store(peer, paths, dataclasses.replace(options, commit=False), on_plan=on_plan, on_result=collect)
    report.commitment = request_commitment(peer, kept, options.commitment)
    return report


def _store_in_parallel(peer, paths, recursive, on_plan, on_result, decompress, jobs, journal) -> StoreReport:
    """``-j N``: the files split into N shares of about equal bytes, one association (or more) each.

    The file list is held in memory here (paths only); each share then runs the
    ordinary streaming sequence in its own thread.  Results arrive in any order.
    """
    import threading

    started = time.perf_counter()
    lock = threading.Lock()
    report = StoreReport(peer)
    shares: list[list[str]] = [[] for _ in range(jobs)]
    loads = [0] * jobs
    sized = []
    for entry in expand(paths, recursive):
        if isinstance(entry, InputProblem):
            report.counts[SKIPPED] += 1
            if on_result:
                on_result(FileResult(entry.path, SKIPPED, entry.reason))
            continue
        try:
            sized.append((os.stat(entry).st_size, entry))
        except OSError as exc:
            report.counts[SKIPPED] += 1
            if on_result:
                on_result(FileResult(entry, SKIPPED, f"cannot read: {exc.strerror or exc}"))
    for size, path in sorted(sized, reverse=True):  # largest first, each to the lightest share
        lightest = loads.index(min(loads))
        shares[lightest].append(path)
        loads[lightest] += size
    plans = [plan(share) for share in shares if share]
    report.planned = sum(p.files for p in plans)
    report.planned_bytes = sum(p.bytes for p in plans)
    if on_plan:
        on_plan(Plan(report.planned, report.planned_bytes, [g for p in plans for g in p.groups]))

    def emit(result: FileResult) -> None:
        with lock:
            if on_result:
                on_result(result)

    def run(share: list[str]) -> None:
        part = store(peer, share, on_result=emit, decompress=decompress, journal=journal)
        with lock:
            report.counts.update(part.counts)
            report.bytes_sent += part.bytes_sent
            report.not_sent += part.not_sent
            report.error = report.error or part.error

    fan_out(run, [share for share in shares if share], "store")
    report.seconds = time.perf_counter() - started
    return report


def _report_unsendable(entry, emit) -> None:
    loaded = load_input(entry)
    if isinstance(loaded, FileResult):
        emit(loaded)


def load_input(entry) -> FileResult | tuple[str, bytes, DicomFile]:
    """Read and check one input; a FileResult (skipped) when it cannot be sent."""
    if isinstance(entry, InputProblem):
        return FileResult(entry.path, SKIPPED, entry.reason)
    try:
        with open(entry, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return FileResult(entry, SKIPPED, f"cannot read: {exc.strerror or exc}")
    try:
        info = probe(data)
    except BadFile as exc:
        return FileResult(entry, SKIPPED, str(exc), size=len(data))
    return entry, data, info


class _LazyAssociation:
    """The association of one group: opened at its first file, reopened after a loss, closed at the end.

    Up to the window agreed with the peer (:attr:`Peer.window <dicomscu.transport.peer.Peer.window>`, 1 unless
    asked for) C-STORE requests are outstanding at once: :meth:`send` returns the results whose responses came
    in, :meth:`finish` those still awaited.  A peer that aborts (or drops the connection) while files are in
    flight fails those files, with the reason; the next file goes over a new association, after a
    short backoff.  A peer that stops answering (a timeout) is not tried again.  A refused or rejected first
    association is not retried (the command fails fast), and after :data:`MAX_LOST_IN_A_ROW` losses in a row,
    or when reopening fails :data:`MAX_REOPEN_TRIES` times, :meth:`send` gives up.
    :attr:`error` keeps the last association failure.
    """

    def __init__(self, peer: Peer, contexts: list[Proposal], decompress: bool = False) -> None:
        self.peer = peer
        self.contexts = contexts
        self.decompress = decompress
        self.channel: Channel | None = None
        self.error: DicomscuError | None = None
        self._stack = ExitStack()
        self._opened = False
        self._lost_in_a_row = 0
        #: message ID -> the file it carries, response awaited
        self._in_flight: dict[int, _InFlight] = {}

    def __enter__(self) -> "_LazyAssociation":
        return self

    def __exit__(self, *exc_info) -> None:
        self._stack.__exit__(*exc_info)  # released, or aborted on an exception

    def send(self, path: str, data: bytes, info: DicomFile) -> list[FileResult] | None:
        """The results this file's sending completed (its own, or earlier files' whose responses came in
        meanwhile); None when no association can be opened for it (give up)."""
        if self.channel is None and not self._open():
            return None
        channel = self.channel
        if channel is None:  # pragma: no cover - _open() set it
            return None
        try:
            submitted = submit_file(channel, path, data, info, self.decompress)
        except DicomscuError as exc:
            return self._lost(exc, _InFlight(path, info, len(data), info.transfer_syntax))
        if isinstance(submitted, FileResult):
            return [submitted]
        message_id, flight = submitted
        self._in_flight[message_id] = flight
        return self._collect(channel.window)

    def finish(self) -> list[FileResult]:
        """The results of every file still in flight (waiting for their responses)."""
        return self._collect(1)

    def _collect(self, window: int) -> list[FileResult]:
        """Responses read until fewer than `window` files are in flight."""
        results: list[FileResult] = []
        channel = self.channel
        while channel is not None and len(self._in_flight) >= window:
            try:
                response = channel.receive(self._in_flight.keys(), "C-STORE").command
            except DicomscuError as exc:
                return results + self._lost(exc)
            results.append(file_result(response, self._in_flight.pop(response.MessageIDBeingRespondedTo)))
            self._lost_in_a_row = 0
        return results

    def _lost(self, exc: DicomscuError, sending: "_InFlight | None" = None) -> list[FileResult]:
        """The association failed: every file in flight (and the one being sent) fails with the reason."""
        flights = list(self._in_flight.values()) + ([sending] if sending is not None else [])
        self._in_flight.clear()
        where = flights[-1].path if flights else "?"
        self.error = type(exc)(f"{exc} (while sending {where})")
        # a peer that aborted or dropped us gets a new association; one that stalls (a timeout) does not
        self._lost_in_a_row += 1 if isinstance(exc, (AssociationAborted, ConnectionFailed)) else MAX_LOST_IN_A_ROW
        self._stack.__exit__(type(exc), exc, exc.__traceback__)  # aborts the association
        self._stack, self.channel = ExitStack(), None
        return [FileResult(flight.path, FAILED, f"{exc} (the association was lost with this file in flight"
                           f"{_odd_elements_note(flight.info)})", sop_instance=flight.info.sop_instance,
                           size=flight.size) for flight in flights]

    def _open(self) -> bool:
        if self._lost_in_a_row >= MAX_LOST_IN_A_ROW:
            return False
        for attempt in range(MAX_REOPEN_TRIES if self._opened else 1):
            if attempt:
                time.sleep(REOPEN_BACKOFF * 2 ** (attempt - 1))
            try:
                self.channel = self._stack.enter_context(associate(self.peer, self.contexts, window=self.peer.window))
            except AssociationRejected as exc:  # the peer's answer will not change
                self.error = exc
                return False
            except DicomscuError as exc:
                self.error = exc
                continue
            self._opened = True
            return True
        return False


@dataclass
class _InFlight:
    """A file whose C-STORE-RQ is sent: what its result needs once the response comes."""

    path: str
    info: DicomFile
    size: int
    #: The transfer syntax it went in.
    syntax: str


def submit_file(channel: Channel, path: str, data: bytes, info: DicomFile,
                decompress: bool = False) -> FileResult | tuple[int, _InFlight]:
    """Send one checked file's C-STORE-RQ over `channel`: (its message ID, what its result needs), or its
    result when it cannot be sent (the peer accepts none of the syntaxes it could go in).

    The syntax it goes in, and its bytes in that syntax, follow the one rule every path that hands an instance
    on uses (:mod:`dicomscu.files.sending`): its own bytes when its transfer syntax was accepted (unless
    `decompress` asks for uncompressed data), else re-encoded or decompressed into an accepted uncompressed one.
    """
    compressed = info.transfer_syntax not in CONVERTIBLE
    accepted = offered_to(info, channel.context_for)
    syntax = syntax_to_send(info.transfer_syntax, accepted, decompress=decompress)
    if syntax is None:
        uncompressed = next((s for s in accepted if s != info.transfer_syntax), None)
        if uncompressed is None or not compressed:
            return FileResult(path, FAILED, _refusal(channel, info), sop_instance=info.sop_instance,
                              size=len(data))
        return FileResult(path, FAILED, _conversion_failure(info, uncompressed, compressed, None),
                          sop_instance=info.sop_instance, size=len(data))
    context = channel.context_for(info.sop_class, syntax)
    assert context is not None  # (syntax is one of `accepted`)
    try:
        sent = payload(data, info, syntax)
    except Exception as exc:  # pydicom could not convert this file
        return FileResult(path, FAILED, _conversion_failure(info, syntax, compressed, exc),
                          sop_instance=info.sop_instance, size=len(data))
    message_id = channel.next_message_id()
    command = dimse.c_store_rq(message_id, info.sop_class, info.sop_instance)
    channel.send_encoded(context.context_id, command, sent, "C-STORE")
    return message_id, _InFlight(path, info, len(data), context.transfer_syntax)


def file_result(response, flight: _InFlight) -> FileResult:
    """A file's result from the C-STORE-RSP to it."""
    info = flight.info
    status = decode(response.Status, "store")
    outcome = {SUCCESS: OK, WARNING: WARNED}.get(status.category, FAILED)
    message = ""
    if outcome != OK:
        detail = response.ErrorComment
        message = f"C-STORE {'warning' if outcome == WARNED else 'failed'}: {status}"
        message += f" ({detail})" if detail else ""
    notes = [info.warning] if info.warning else []
    if info.odd_fragments and flight.syntax == info.transfer_syntax:
        notes.append(f"{len(info.odd_fragments)} odd-length pixel data fragment(s) padded to an even length "
                     "(PS3.5 A.4), as peers require")
    for note in notes:
        message = f"{message}; {note}" if message else note
    return FileResult(flight.path, outcome, message, status, info.sop_instance, flight.size, info.sop_class)


def _name(uid: str) -> str:
    """The UID's name in the registry (pydicom's, loaded only for a message that needs it)."""
    from pydicom.uid import UID

    return UID(uid).name


def _refusal(channel: Channel, info: DicomFile) -> str:
    sop_name = _name(info.sop_class)
    syntax_name = _name(info.transfer_syntax)
    if channel.context_for(info.sop_class) is None:
        return f"the peer does not accept {sop_name} ({info.sop_class}) in any transfer syntax we offered"
    return f"the peer does not accept {syntax_name} for {sop_name}, nor any uncompressed transfer syntax"


def _conversion_failure(info: DicomFile, target: str, compressed: bool, exc: Exception | None) -> str:
    """Why a file could not be converted for the peer (`exc` None: no decoder was there to try)."""
    syntax_name = _name(info.transfer_syntax)
    if not compressed:
        return f"cannot convert {syntax_name} to {_name(target)}: {exc}"
    refused = f"the peer does not accept {syntax_name} for {_name(info.sop_class)}"
    convert = "convert the file first (gdcmconv --raw, dcmdjpeg)"
    from pydicom.pixels import get_decoder

    try:
        available = get_decoder(info.transfer_syntax).is_available
    except NotImplementedError:
        return f"{refused}, and no decoder exists for it here: {convert}"
    if available and exc is None:
        return f"{refused}, and a decompressed file goes only in little endian, which the peer does not accept"
    if available:
        return f"{refused}, and decompressing it failed: decoder failed: {type(exc).__name__}: {exc}"
    return (f"{refused}, and no decoder for it is installed: pip install 'dicomscu[compressed]', "
            f"or {convert}")


def _odd_elements_note(info: DicomFile) -> str:
    """Why a peer may have dropped this file: elements of odd length, which PS3.5 7.1.1 forbids and on which
    DCMTK-based peers abort (named: the file is the sender's to fix, nothing is changed in it)."""
    if not info.odd_elements:
        return ""
    tags = ", ".join(f"({tag >> 16:04X},{tag & 0xFFFF:04X})" for tag in info.odd_elements[:3])
    return f"; the file has elements of odd length, {tags}, which PS3.5 7.1.1 forbids and DCMTK-based peers abort on"
