"""C-MOVE and C-GET: retrieve instances into a directory, complete files only.

Both run the same sequence: check the identifier (unique key of the level, no
wildcards), optionally find what is already on disk (``skip_existing``), send the
request, and follow the pending responses' sub-operation counts until the final
status.  They differ in where the instances arrive:

* C-MOVE: the server opens a new association to the Move Destination AE.  By
  default that is us: a storage SCP (:class:`.scp.StorageSCP`) listens on
  ``port_scp`` under our calling AE title for the duration of the move.  With
  ``move_destination`` the instances go to a third AE instead.
* C-GET: the server sends C-STORE requests back over the same association (SCP
  role negotiated for the storage SOP classes), answered here one by one.

Instances are written by :class:`~dicomscu.files.instances.InstanceWriter`.  What a
retrieval is asked and what it reports live in :mod:`.retrieval`.  An identifier is a
pydicom data set, or a flat :class:`~dicomscu.query.identifier.Identifier` when the
keys are the retrieval keys only: then nothing here loads pydicom.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING, cast

from dicomscu.choices import LevelName
from dicomscu.errors import DicomscuError, OperationFailed, PeerTimeout, UsageError
from dicomscu.files.instances import InstanceWriter
from dicomscu.files.probe import valid_uid
from dicomscu.operations.fanout import fan_out
from dicomscu.operations.options import given
from dicomscu.operations.retrieval import (  # noqa: F401 - names of this module's API since the start
    AS_THEY_COME,
    COMPRESSED_SYNTAXES,
    GUESSES,
    Progress,
    RetrieveOptions,
    RetrieveReport,
    Scope,
    key_value,
    check_identifier,
    combine,
    refused_note,
)
from dicomscu.operations.sink import InstanceSink
from dicomscu.operations.status import FAILURE, PENDING, decode
from dicomscu.query.identifier import CHARSET, ELEMENTS, QUERY_LEVEL, Identifier, Query, encode_identifier, query_of
from dicomscu.storage_classes import STORAGE_UIDS
from dicomscu.protocol import commands as dimse
from dicomscu.protocol.messages import Message
from dicomscu.protocol.negotiation import Proposal
from dicomscu.protocol.pdu import RoleSelection
from dicomscu.transport.association import associate
from dicomscu.transport.channel import Channel
from dicomscu.transport.peer import Peer
from dicomscu.uids import EXPLICIT_VR_LE as ExplicitVRLittleEndian, IMPLICIT_VR_LE as ImplicitVRLittleEndian

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

LOGGER = logging.getLogger("dicomscu")
#: PS3.8: at most 128 presentation contexts; one is the GET context itself.
MAX_STORAGE_CONTEXTS = 127
#: SOP Instance UIDs per image-level request when retrieving what is missing.
UIDS_PER_REQUEST = 200
#: A server that does not answer the survey within this long gets the full list (bounded by --timeout).
SURVEY_SECONDS = 10.0
#: Up to this many identifiers, C-GET first asks (C-FIND) which SOP classes they hold.
MAX_IDENTIFIERS_TO_SURVEY = 16


def retrieve_identifier(query: Query, operation: str) -> Dataset:
    """The identifier of a C-MOVE/C-GET: the query's keys that have values, checked
    (:func:`.retrieval.check_identifier`)."""
    from pydicom.dataset import Dataset

    dataset = Dataset()
    values: dict[str, str] = {}
    for element in query.dataset:
        if element.tag == CHARSET or element.value in (None, "", []):
            continue
        values[element.keyword or f"({element.tag >> 16:04X},{element.tag & 0xFFFF:04X})"] = str(element.value)
        dataset.add(element)
    if "SpecificCharacterSet" in query.dataset and len(dataset) > 1:
        dataset.SpecificCharacterSet = query.dataset.SpecificCharacterSet
    check_identifier(values, query.model, query.level or "", operation)
    return dataset


def identifiers_from_answers(answers, query: Query, level: str | None = None,
                             operation: str = "a retrieval") -> list[Dataset]:
    """One retrieve identifier per find answer: its level and the unique keys down to it.

    For ``--find ... --then get`` and ``--from-json``.  The level is `level`, else
    the answer's own Query/Retrieve Level, else the query's.
    """
    from pydicom.dataset import Dataset

    identifiers = []
    for answer in answers:
        name = (level or str(answer.get("QueryRetrieveLevel", "") or "") or query.level or "").upper()
        item = Dataset()
        item.QueryRetrieveLevel = name
        try:
            path = query.model.path_to(name)
        except (KeyError, ValueError):
            raise UsageError(f"an answer has no usable Query/Retrieve Level ({name or 'none'}): "
                             "give --patient, --study, --series or --image")
        for step in path:
            value = answer.get(step.unique)
            if value not in (None, ""):
                setattr(item, step.unique, str(value))
        if path[-1].unique not in item:
            raise UsageError(f"an answer has no {path[-1].unique}: cannot retrieve it at the {name} level")
        # the same rules as -k, before anything is sent: a '*' here would retrieve the whole archive
        check_identifier({step.unique: str(item.get(step.unique, "")) for step in path if step.unique in item},
                         query.model, name, operation)
        identifiers.append(item)
    return identifiers


def move(peer: Peer, query: Query, options: RetrieveOptions, on_progress: Progress | None = None,
         identifiers: list[Dataset] | None = None, jobs: int | None = None) -> RetrieveReport:
    """C-MOVE the instances matching `query` (or `identifiers`) to our SCP (or ``options.move_destination``).

    With ``options.jobs`` (or `jobs`, which overrides it) > 1 the work is split by series over that many
    associations; the instances of all of them arrive at the one SCP.
    """
    import threading

    options = given(options, RetrieveOptions, jobs=jobs)
    jobs = options.jobs

    from dicomscu.operations.scp import StorageSCP

    report = RetrieveReport(peer, "C-MOVE")
    started = time.perf_counter()
    identifiers = identifiers_for(peer, query, options, report, "C-MOVE", identifiers)
    report.scope = Scope.of(identifiers)
    writer = InstanceWriter(options.output, options.layout, options.tag)
    destination = options.move_destination or peer.calling_ae
    if options.move_destination is None and options.port_scp is None:
        raise UsageError("PORT is needed for a C-MOVE to ourselves: the port the server connects back to",
                         option="port_scp", hint="or name another application as the move destination")
    lock = threading.Lock()
    parts: list[RetrieveReport] = []

    def progress(_report) -> None:
        with lock:
            combined = combine(peer, parts)
            report.completed, report.failed, report.warning = combined.completed, combined.failed, combined.warning
            report.remaining = combined.remaining
        if on_progress is not None:
            on_progress(report)

    scp = (StorageSCP(peer.calling_ae, options.port_scp or 0, InstanceSink(writer, report, progress),
                      options.syntaxes) if options.move_destination is None else nullcontext())
    sop_class = _service_class(query, "move")
    contexts = [Proposal(sop_class, _request_syntaxes(options))]

    def command(message_id: int) -> bytes:
        return dimse.c_move_rq(message_id, sop_class, destination)

    def run(share: list[Dataset], part: RetrieveReport) -> None:
        with associate(peer, contexts) as channel:
            for identifier in share:
                try:
                    _request(channel, command, identifier, part, progress, None)
                except PeerTimeout as exc:
                    if options.move_destination is None and report.written == 0:
                        raise PeerTimeout(
                            f"{exc}; nothing arrived on port {options.port_scp}: the server probably cannot "
                            f"connect back to AE {destination} - check the AE title, host and port it has "
                            "mapped for it") from None
                    raise

    with scp:
        if jobs > 1 and len(identifiers) < jobs:
            identifiers = [series for item in identifiers for series in series_of(peer, query, item)]
        shares = [identifiers[index::jobs] for index in range(max(jobs, 1))]
        parts.extend(RetrieveReport(peer, "C-MOVE") for share in shares if share)
        fan_out(lambda pair: run(*pair), list(zip([share for share in shares if share], parts)), "move")
    combined = combine(peer, parts)
    report.completed, report.failed, report.warning = combined.completed, combined.failed, combined.warning
    report.status, report.remaining, report.requests = combined.status, 0, combined.requests
    report.seconds = time.perf_counter() - started
    report.advice = _move_advice(report, options, destination, scp if options.move_destination is None else None)
    _raise_on_failure(report)
    return report


def _move_advice(report: RetrieveReport, options: RetrieveOptions, destination: str, scp) -> str:
    """Why a C-MOVE delivered nothing, from the status and from what reached our SCP (if it is ours)."""
    unknown = report.status is not None and report.status.code == 0xA801
    if not unknown and not (report.failed and not report.written and not report.completed):
        return ""
    if unknown:
        mapping = "" if scp is None else f" (--aetitle) at this machine's address and port {options.port_scp}"
        return (f" - the server does not know the move destination AE {destination}: ask its administrator to "
                f"add {destination}{mapping}" + (", or use --get" if scp is not None else
                                                  ", or check the spelling of --move-dest"))
    if scp is None:
        return (f" - the server knows AE {destination} but could not deliver to it: check that {destination} is "
                "running, reachable from the server at the address mapped for it, and accepts what it sends")
    if scp.connections == 0:
        return (f" - the server knows AE {destination} but never connected back: it maps it to another host or "
                f"port than this machine and --port-scp {options.port_scp}, or a firewall stops it; or use --get")
    syntaxes = ("" if options.accept_all_syntaxes else
                " (as gdcmscu, only Implicit VR Little Endian is accepted: add --accept-all-syntaxes)")
    return (f" - the server connected back to port {options.port_scp} but sent nothing we accepted: it "
            f"probably offers only transfer syntaxes or SOP classes we refuse{syntaxes}")


def get(peer: Peer, query: Query, options: RetrieveOptions, on_progress: Progress | None = None,
        identifiers: list[Dataset] | None = None, jobs: int | None = None) -> RetrieveReport:
    """C-GET the instances matching `query` (or `identifiers`) over one association (or ``options.jobs``, or
    `jobs`, which overrides it)."""
    options = given(options, RetrieveOptions, jobs=jobs)
    if options.jobs > 1:
        return _get_in_parallel(peer, query, options, on_progress, identifiers, options.jobs)
    report = RetrieveReport(peer, "C-GET")
    started = time.perf_counter()
    identifiers = identifiers_for(peer, query, options, report, "C-GET", identifiers)
    report.scope = Scope.of(identifiers)
    learned = survey_classes(peer, query, identifiers) if identifiers else {}
    if _contexts_needed(learned, options) > MAX_STORAGE_CONTEXTS:
        report = _get_spread(peer, query, options, on_progress, identifiers, report)
    else:
        _get_over(peer, query, options, identifiers, learned, report, on_progress)
    report.seconds = time.perf_counter() - started
    _raise_on_failure(report)
    return report


def _get_over(peer: Peer, query: Query, options: RetrieveOptions, identifiers: list, learned: dict[str, set[str]],
              report: RetrieveReport, on_progress: Progress | None) -> None:
    """C-GET `identifiers` over one association whose storage contexts take what `learned` says comes."""
    writer = InstanceWriter(options.output, options.layout, options.tag)
    sop_class = _service_class(query, "get")
    contexts = [Proposal(sop_class, _request_syntaxes(options))]
    storage = list(dict.fromkeys(learned or STORAGE_UIDS))[:MAX_STORAGE_CONTEXTS]
    contexts += _storage_contexts(storage, learned, options)
    roles = [_scp_role(uid) for uid in storage]

    sink = InstanceSink(writer, report, on_progress)

    def on_store(channel: Channel, message: Message) -> None:
        _store_one(channel, message, sink)

    with associate(peer, contexts, roles=roles) as channel:
        report.refused_classes = [uid for uid in storage if channel.context_for(uid) is None]
        if not learned:
            report.refused_classes = []  # a guess refused says nothing about the instances
        accepted = {(context.abstract_syntax, context.transfer_syntax) for context in channel.accepted}
        try:
            for identifier in identifiers:
                command = lambda message_id: dimse.c_get_rq(message_id, sop_class)  # noqa: E731
                _request(channel, command, identifier, report, on_progress, on_store)
        finally:
            if report.failed:
                report.advice = _get_advice(learned, accepted, options)


def _contexts_needed(learned: dict[str, set[str]], options: RetrieveOptions) -> int:
    """Storage contexts for every (class, syntax) the survey found to come as it is: one per class (Implicit VR
    LE only, as gdcmscu), or with --accept-all-syntaxes one per syntax each class is held in."""
    if not options.accept_all_syntaxes:
        return len(learned)
    return sum(max(1, len(syntaxes)) for syntaxes in learned.values())


def _get_spread(peer: Peer, query: Query, options: RetrieveOptions, on_progress: Progress | None,
                identifiers: list, report: RetrieveReport) -> RetrieveReport:
    """More (class, syntax) pairs than one association's 127 storage contexts: the instances are found one by
    one (an IMAGE-level C-FIND under each identifier), grouped so that each group's pairs fit, and each group
    is retrieved by its own SOP Instance UIDs over an association of its own; one combined report."""
    from pydicom.dataset import Dataset

    from dicomscu.operations.find import find_each

    wanted = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "AvailableTransferSyntaxUID"]
    if query.model.name == "patientroot":
        wanted.insert(0, "PatientID")
    found: dict[tuple[str, str], list[tuple[str, ...]]] = {}

    def on_answer(answer) -> None:
        values = _answer_values(answer, wanted)
        syntax = values["AvailableTransferSyntaxUID"] if options.accept_all_syntaxes else ""
        where = tuple(values.get(keyword, "") for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"))
        found.setdefault((values["SOPClassUID"], syntax if valid_uid(syntax) else ""), []).append(
            (*where, values["SOPInstanceUID"]))

    find_each(peer, [_query_below(query, identifier, "IMAGE", wanted) for identifier in identifiers],
              on_answer=on_answer, raw=True)
    keys = sorted(found)
    groups = [keys[start:start + MAX_STORAGE_CONTEXTS] for start in range(0, len(keys), MAX_STORAGE_CONTEXTS)]
    LOGGER.info("C-GET: %d (class, syntax) pair(s) need %d associations", len(keys), len(groups))
    parts = [RetrieveReport(peer, "C-GET") for _ in groups]

    def progress(_part) -> None:
        if on_progress is not None:
            on_progress(combine(peer, parts))

    for group, part in zip(groups, parts):
        learned: dict[str, set[str]] = {}
        series: dict[tuple[str, str, str], list[str]] = {}
        for uid, syntax in group:
            learned.setdefault(uid, set()).update([syntax] if syntax else [])
            for patient, study, series_uid, instance in found[(uid, syntax)]:
                series.setdefault((patient, study, series_uid), []).append(instance)
        chunks = []
        for (patient, study, series_uid), instances in series.items():
            for start in range(0, len(instances), UIDS_PER_REQUEST):
                item = Dataset()
                item.QueryRetrieveLevel = "IMAGE"
                if query.model.name == "patientroot":
                    item.PatientID = patient
                item.StudyInstanceUID, item.SeriesInstanceUID = study, series_uid
                item.SOPInstanceUID = instances[start:start + UIDS_PER_REQUEST]
                chunks.append(item)
        _get_over(peer, query, options, chunks, learned, part, progress)
    total = combine(peer, parts)
    total.scope, total.already_present = report.scope, report.already_present
    return total


def _get_advice(learned: dict[str, set[str]], accepted: set[tuple[str, str]], options: RetrieveOptions) -> str:
    """Why C-GET sub-operations may have failed, from what the survey learned and what was negotiated: the
    (SOP class, transfer syntax) pairs the server holds with no storage context to come in, named."""
    from pydicom.uid import UID

    missing = sorted((uid, syntax) for uid, syntaxes in learned.items() for syntax in syntaxes
                     if (uid, syntax) not in accepted)
    hint = "" if options.accept_all_syntaxes else \
        " (as gdcmscu, only Implicit VR Little Endian is proposed: add --accept-all-syntaxes to take instances " \
        "as they are stored)"
    if missing:
        shown = "; ".join(f"{UID(uid).name} in {UID(syntax).name}" for uid, syntax in missing[:6])
        more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        return f" - the server holds {shown}{more}, which no accepted storage context takes{hint}"
    if learned and not any(learned.values()):
        return (" - the server did not say which transfer syntaxes it holds (no AvailableTransferSyntaxUID): an "
                "instance it cannot convert to a syntax proposed fails" + hint)
    return ""


def _storage_contexts(storage: list[str], learned: dict[str, set[str]], options: RetrieveOptions) -> list:
    """The C-GET storage contexts: the server picks one transfer syntax per context.

    As gdcmscu, Implicit VR LE only.  With --accept-all-syntaxes each class gets a
    context for each syntax the survey saw it stored in, then, class after class
    while the 127 contexts last, the uncompressed pair and the other syntaxes in order
    of use, so the server can send every instance as it holds it.  With the fallback
    list (up to 127 classes, one context each) the server picks among all of them.
    """
    if not options.accept_all_syntaxes:
        return [Proposal(uid, [ImplicitVRLittleEndian]) for uid in storage]
    uncompressed: list[str] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    if not learned:
        return [Proposal(uid, [*uncompressed, *COMPRESSED_SYNTAXES]) for uid in storage]
    # first what each class needs: one context per syntax the server holds it in (or the uncompressed pair)
    needed = {uid: [[syntax] for syntax in sorted(learned.get(uid, ()))] or [uncompressed] for uid in storage}
    if sum(map(len, needed.values())) > MAX_STORAGE_CONTEXTS:  # too many: one context each, all it needs
        return [Proposal(uid, [*sorted(learned.get(uid, ())), *uncompressed]) for uid in storage]
    # then guesses, class after class in turn, while the 127 contexts last
    guesses: dict[str, list[list[str]]] = {uid: [group for group in [uncompressed, *([syntax] for syntax in GUESSES)] if group not in needed[uid]]
               for uid in storage}
    budget = MAX_STORAGE_CONTEXTS - sum(map(len, needed.values()))
    while budget > 0 and any(guesses.values()):
        for uid in storage:
            if budget and guesses[uid]:
                needed[uid].append(guesses[uid].pop(0))
                budget -= 1
    return [Proposal(uid, group) for uid in storage for group in needed[uid]]


def survey_classes(peer: Peer, query: Query, identifiers: list[Dataset]) -> dict[str, set[str]]:
    """The SOP classes (and, where the server says, transfer syntaxes) of what `identifiers` select.

    C-GET must propose a storage context (SCP role) for every class it will be
    sent, in a syntax the server can send it in, and at most 127 fit: asking first
    (an IMAGE-level C-FIND for SOPClassUID and AvailableTransferSyntaxUID) means an
    ECG or a JPEG 2000 image arrives as surely as a CT.  Few identifiers are asked
    about one by one (over one association), many through the query itself.  {} when the server refuses the
    query or leaves SOPClassUID empty: the caller then proposes the full list.
    """
    from dicomscu.operations.find import find_each

    if len(identifiers) > MAX_IDENTIFIERS_TO_SURVEY:
        identifiers = [_with_values(query.dataset)]
    found: dict[str, set[str]] = {}
    wanted = ["SOPClassUID", "AvailableTransferSyntaxUID"]

    def on_answer(answer) -> None:  # read from its bytes: no data set decoded
        values = _answer_values(answer, wanted)
        syntax = values["AvailableTransferSyntaxUID"]
        found.setdefault(values["SOPClassUID"], set()).update([syntax] if valid_uid(syntax) else [])

    surveys = [_query_below(query, identifier, "IMAGE", wanted) for identifier in identifiers]
    quick = dataclasses.replace(peer, timeouts=dataclasses.replace(
        peer.timeouts, dimse=min(peer.timeouts.dimse, SURVEY_SECONDS)))
    try:
        find_each(quick, surveys, on_answer=on_answer, raw=True)
    except DicomscuError as exc:  # the C-GET itself will say what is wrong with the peer, if anything
        LOGGER.info("no SOP class survey (%s): proposing the full list", exc)
        return {}
    found.pop("", None)
    return found


def _keys_of(identifier) -> list[str]:
    """The ``-k`` strings of an identifier's keys that have values (a flat one, or a data set)."""
    if isinstance(identifier, Identifier):
        return identifier.keys_text()
    return [f"{e.keyword}={key_value(e.value)}" for e in identifier
            if e.tag not in (QUERY_LEVEL, CHARSET) and e.keyword and e.value not in (None, "", [])]


def _query_below(query: Query, identifier, level: str, wanted: list[str]) -> Query:
    """A C-FIND at `level` for `wanted` (and the unique keys down to it) below `identifier`: flat, without
    pydicom, when the identifier and the keys are."""
    if isinstance(identifier, Identifier) and all(keyword in ELEMENTS for keyword in wanted):
        flat = Identifier({**{k: v for k, v in identifier.items() if v}, "QueryRetrieveLevel": level})
        for keyword in [step.unique for step in query.model.path_to(level)] + wanted:
            flat.setdefault(keyword, "")
        return query_of(query.model.name, flat)
    from dicomscu.query.build import build_query

    return build_query(query.model.name, cast(LevelName, level.lower()), [*_keys_of(identifier), *wanted],
                       charset="")


def _with_values(dataset: Dataset) -> Dataset:
    """The elements of a query that constrain it (a value other than empty or a lone '*')."""
    from pydicom.dataset import Dataset

    kept = Dataset()
    for element in dataset:
        if element.value not in (None, "", "*", []):
            kept.add(element)
    return kept


def _get_in_parallel(peer, query, options, on_progress, identifiers, jobs) -> RetrieveReport:
    """``--get -j N``: the work split by series over N associations, one combined report."""
    import threading

    started = time.perf_counter()
    report = RetrieveReport(peer, "C-GET")
    identifiers = identifiers_for(peer, query, options, report, "C-GET", identifiers)
    if len(identifiers) < jobs:
        identifiers = [series for item in identifiers for series in series_of(peer, query, item)]
    shares = [share for share in (identifiers[index::jobs] for index in range(jobs)) if share]
    parts = [RetrieveReport(peer, "C-GET") for _ in shares]
    lock = threading.Lock()

    def combined_progress(_part) -> None:
        if on_progress is not None:
            with lock:
                total = combine(peer, parts)
            on_progress(total)

    # one association each; the identifiers name what is missing already
    once = dataclasses.replace(options, skip_existing=False, jobs=1)

    def run(share: list[Dataset], part: RetrieveReport) -> None:
        result = get(peer, query, once, combined_progress, share)
        with lock:
            part.__dict__.update(result.__dict__)  # the placeholder becomes the share's report

    fan_out(lambda pair: run(*pair), list(zip(shares, parts)), "get")
    total = combine(peer, parts)
    total.already_present += report.already_present
    total.seconds = time.perf_counter() - started
    return total


def series_of(peer: Peer, query: Query, identifier) -> list:
    """Series-level identifiers under a patient or study identifier (to spread over associations)."""
    if str(identifier.get("QueryRetrieveLevel", "")).upper() in ("SERIES", "IMAGE"):
        return [identifier]
    from dicomscu.operations.find import find

    series_query = _query_below(query, identifier, "SERIES", [])
    if isinstance(series_query.dataset, Identifier):  # read from the answers' bytes: no pydicom
        found: list = []
        find(peer, series_query, on_answer=lambda answer: found.append(_flat_answer(answer, query, "SERIES")),
             raw=True)
        return found or [identifier]
    answers: list[Dataset] = []
    find(peer, series_query, on_answer=answers.append)
    return identifiers_from_answers(answers, series_query, "SERIES") or [identifier]


def _answer_values(answer, keywords: list[str]) -> dict[str, str]:
    """Text values of top-level keys of a raw C-FIND answer, read from its bytes ("" when absent)."""
    from dicomscu.files.probe import BadFile, top_level_values

    tags = [ELEMENTS[keyword][0] for keyword in keywords]
    try:
        values = top_level_values(answer.raw, answer.syntax, tags)
    except BadFile as exc:
        raise OperationFailed(f"a C-FIND answer is broken: {exc}") from None
    return {keyword: values[tag] for keyword, tag in zip(keywords, tags)}


def _flat_answer(answer, query: Query, level: str) -> Identifier:
    """A C-FIND answer at `level` as a flat retrieve identifier: the level and its unique keys down to it."""
    keywords = [step.unique for step in query.model.path_to(level)]
    values = _answer_values(answer, keywords)
    if not values[keywords[-1]]:
        raise UsageError(f"an answer has no {keywords[-1]}: cannot retrieve it at the {level} level")
    return Identifier({"QueryRetrieveLevel": level, **{k: v for k, v in values.items() if v}})


def _service_class(query: Query, operation: str) -> str:
    """The model's C-MOVE or C-GET SOP class; a usage error for a model without one (worklist)."""
    uid = getattr(query.model, operation)
    if uid is None:
        raise UsageError(f"the {query.model.title} model has no C-{operation.upper()}: use the patient root or "
                         "study root model")
    return uid


def _request_syntaxes(options: RetrieveOptions) -> list[str]:
    # gdcmscu requests Implicit VR LE (movescu -xi); accept-all also offers Explicit.
    return [ImplicitVRLittleEndian, ExplicitVRLittleEndian] if options.accept_all_syntaxes else [
        ImplicitVRLittleEndian]


def _scp_role(sop_class: str) -> RoleSelection:
    """We take the SCP role for `sop_class`, so that the server may send us C-STORE requests (PS3.4 C.4.3)."""
    return RoleSelection(sop_class, scu=False, scp=True)


def identifiers_for(peer: Peer, query: Query, options: RetrieveOptions, report: RetrieveReport,
                    operation: str, given: list | None = None) -> list:
    """The identifiers to send: `given` ones (``--find ... --then``, ``--from-json``, a share of series)
    or the query's; with skip_existing, for each of them, those of its series' instances still missing
    from the output (a C-FIND of its instances, each looked for on disk)."""
    identifiers = given if given is not None else [retrieve_identifier(query, operation)]
    if not options.skip_existing:
        return identifiers
    return [missing for identifier in identifiers for missing in _missing(peer, query, options, report, identifier)]


def _missing(peer: Peer, query: Query, options: RetrieveOptions, report: RetrieveReport, identifier) -> list:
    """IMAGE-level identifiers of the instances `identifier` selects that are not in the output yet."""
    from pydicom.dataset import Dataset

    from dicomscu.operations.find import find
    from dicomscu.query.build import build_query

    writer = InstanceWriter(options.output, options.layout, options.tag)
    keys = _keys_of(identifier) + ["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]
    if query.model.name == "patientroot":
        keys.append("PatientID")
    image_query = build_query(query.model.name, "image", keys, charset="")
    missing: dict[tuple[str, str, str], list[str]] = {}

    def on_answer(answer: Dataset) -> None:
        where = (str(answer.get("PatientID", "")), str(answer.get("StudyInstanceUID", "")),
                 str(answer.get("SeriesInstanceUID", "")))
        uid = str(answer.get("SOPInstanceUID", ""))
        if writer.exists(uid, *where):
            report.already_present += 1
        else:
            missing.setdefault(where, []).append(uid)

    find(peer, image_query, on_answer=on_answer)
    identifiers = []
    for (patient, study, series), uids in missing.items():
        for start in range(0, len(uids), UIDS_PER_REQUEST):
            item = Dataset()
            item.QueryRetrieveLevel = "IMAGE"
            if query.model.name == "patientroot" and patient:
                item.PatientID = patient
            item.StudyInstanceUID = study
            item.SeriesInstanceUID = series
            item.SOPInstanceUID = uids[start:start + UIDS_PER_REQUEST]
            identifiers.append(item)
    return identifiers


def _request(channel: Channel, command, identifier: Dataset, report: RetrieveReport,
             on_progress: Progress | None, on_store) -> None:
    """Send one C-MOVE/C-GET request and follow it to its final response."""
    context = channel.accepted[0]
    encoded = encode_identifier(identifier, context.transfer_syntax)
    message_id = channel.next_message_id()
    channel.send_encoded(context.context_id, command(message_id), encoded, report.operation)
    report.requests += 1
    before = {"Completed": report.completed, "Failed": report.failed, "Warning": report.warning}
    while True:
        message = channel.receive_any(report.operation)
        response = message.command
        if response.CommandField == dimse.C_STORE_RQ and on_store is not None:
            on_store(channel, message)  # a C-STORE sub-operation (C-GET)
            continue
        if response.MessageIDBeingRespondedTo != message_id or response.Status is None:
            channel.abort()
            raise OperationFailed(f"{report.peer}: unexpected {response.name} during "
                                  f"{report.operation} (protocol error)")
        status = decode(response.Status, report.operation[2:].lower())
        for name in ("Remaining", "Completed", "Failed", "Warning"):
            value = getattr(response, f"NumberOf{name}Suboperations")
            if value is not None:  # counts are per request: add those of earlier requests
                setattr(report, name.lower(), before.get(name, 0) + value)
        if on_progress is not None:
            on_progress(report)
        if status.category != PENDING:
            report.status = status
            report.remaining = 0
            return


def _store_one(channel: Channel, message: Message, sink: InstanceSink) -> None:
    """Answer one incoming C-STORE-RQ (C-GET sub-operation) after writing the file."""
    request = message.command
    syntax = channel.context_for_id(message.context_id).transfer_syntax
    sop_class = request.AffectedSOPClassUID or ""
    sop_instance = request.AffectedSOPInstanceUID or ""
    status = sink.store(sop_class, sop_instance, message.dataset or bytearray(), syntax)
    channel.send_encoded(message.context_id, dimse.c_store_rsp(request.MessageID, sop_class, sop_instance, status),
                         None, "C-STORE-RSP")


def _raise_on_failure(report: RetrieveReport) -> None:
    if report.status is not None and report.status.category == FAILURE:
        error = OperationFailed(f"{report.operation} on {report.peer} failed: {report.status}"
                                + report.advice + refused_note(report))
        error.report = report  # what was done before the failure (for --format json)
        raise error
