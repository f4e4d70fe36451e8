"""What a retrieval (C-GET, C-MOVE, WADO-RS) is asked to do and what it reports.

Kept apart from the retrieval sequences (:mod:`.retrieve`, :mod:`dicomscu.web.wado`) and
free of pydicom, so that a retrieval whose identifier needs no data set (WADO-RS by
UIDs) starts without loading it.
"""

from __future__ import annotations

from dicomscu.choices import Layout

from collections.abc import MutableSequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from dicomscu.errors import UsageError
from dicomscu.operations.status import FAILURE, SUCCESS, WARNING, Status
from dicomscu.transport.peer import Peer
from dicomscu.uids import (
    COMPRESSED_SYNTAXES as _COMPRESSED,
    DEFLATED_EXPLICIT_VR_LE as DeflatedExplicitVRLittleEndian,
    EXPLICIT_VR_BE as ExplicitVRBigEndian,
    EXPLICIT_VR_LE as ExplicitVRLittleEndian,
    IMPLICIT_VR_LE as ImplicitVRLittleEndian,
)

if TYPE_CHECKING:
    from dicomscu.query.model import Model

#: --accept-all-syntaxes: instances kept in the syntax the server has them in.  Compressed syntaxes
#: come first (the server offers a compressed one only for data it holds compressed), then the explicit
#: ones before Implicit VR (an Explicit or big endian file is not re-encoded, private VRs survive).
#: The compressed syntaxes, those archives hold most first (JPEG 2000, JPEG lossless and baseline, RLE,
#: JPEG-LS), then the rest as pydicom lists them: a class's contexts are taken from the front.
_COMMON = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.50",
           "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.51",
           "1.2.840.10008.1.2.4.57")
COMPRESSED_SYNTAXES = tuple(sorted(_COMPRESSED,
                                   key=lambda ts: _COMMON.index(ts) if ts in _COMMON else len(_COMMON)))
#: C-GET contexts for a class whose syntaxes the server did not say, after the uncompressed pair, in
#: this order while the 127 contexts last: the common compressed ones, the other two uncompressed
#: (big endian, retired but held by old archives, and deflate), then the rarer compressed ones.
GUESSES = (*COMPRESSED_SYNTAXES[:len(_COMMON)], ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian,
           *COMPRESSED_SYNTAXES[len(_COMMON):])
AS_THEY_COME = (*COMPRESSED_SYNTAXES, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
                ExplicitVRBigEndian, ImplicitVRLittleEndian)


@dataclass
class RetrieveOptions:
    output: str = "."
    layout: Layout = "flat"
    #: Accept every transfer syntax for incoming instances (gdcmscu: Implicit VR LE only).
    accept_all_syntaxes: bool = False
    #: C-MOVE to this AE instead of our own SCP.
    move_destination: str | None = None
    #: Port of our storage SCP for C-MOVE.
    port_scp: int | None = None
    #: First find the instances, then retrieve only those not already in `output`.
    skip_existing: bool = False
    #: Marks the temporary names of the files written (a cluster run's, removed by its client when a killed
    #: worker leaves some).
    tag: str = ""
    #: Associations (DICOMweb connections; per worker on a cluster) at once, the work split by series.
    jobs: int = 1

    def __post_init__(self) -> None:
        """Checked here for the command line and the API alike (see :mod:`dicomscu.operations.options`)."""
        from dicomscu.operations.options import check_retrieval

        check_retrieval(self)

    @property
    def syntaxes(self) -> list[str]:
        """What our C-MOVE SCP accepts, in order of preference (the acceptor picks the first offered)."""
        return list(AS_THEY_COME) if self.accept_all_syntaxes else [ImplicitVRLittleEndian]


@dataclass
class RetrieveReport:
    peer: Peer
    operation: str  # "C-MOVE" or "C-GET"
    status: Status | None = None
    remaining: int = 0
    completed: int = 0
    failed: int = 0
    warning: int = 0
    #: Files written by us (C-GET, or C-MOVE to our own SCP), and write failures.
    written: int = 0
    write_errors: list[str] = field(default_factory=list)
    already_present: int = 0
    requests: int = 0
    seconds: float = 0.0
    #: SOP classes the instances have (learned by C-FIND) that the server would not send us.
    refused_classes: list[str] = field(default_factory=list)
    #: What to do about a failure, when we can tell (C-MOVE).
    advice: str = ""
    #: Instances whose data set named another SOP Instance UID than the request (written as the data set's),
    #: different data sets refused under a UID already received, instances outside the studies/series asked.
    renamed: int = 0
    conflicting: int = 0
    outside: int = 0
    #: SHA-1 of each data set received, by SOP Instance UID (20 bytes an instance), and the scope asked for.
    received: dict[str, bytes] = field(default_factory=dict, repr=False)
    scope: Scope | None = None

    @property
    def total(self) -> int:
        return self.remaining + self.completed + self.failed + self.warning

    @property
    def ok(self) -> bool:
        return (self.status is None or self.status.category in (SUCCESS, WARNING)) and not (
            self.failed or self.write_errors)


Progress = Callable[[RetrieveReport], object]


#: A report's counts, which reports of parts of one retrieval add up to (:func:`combine`), and its lists.
COUNTS = ("completed", "failed", "warning", "remaining", "written", "requests", "renamed", "conflicting", "outside",
          "already_present")
LISTS = ("write_errors", "refused_classes")


def combine(peer: Peer, parts: list[RetrieveReport]) -> RetrieveReport:
    total = RetrieveReport(peer, "C-GET")
    for part in parts:
        for name in COUNTS:
            setattr(total, name, getattr(total, name) + getattr(part, name))
        total.write_errors += part.write_errors
        total.refused_classes += [uid for uid in part.refused_classes if uid not in total.refused_classes]
        if part.status is not None and (total.status is None or part.status.category == FAILURE):
            total.status = part.status
        total.operation = part.operation
    return total


@dataclass(frozen=True)
class Scope:
    """The studies and series a retrieval asked for (empty: not known at that level)."""

    studies: frozenset[str]
    series: frozenset[str]

    @classmethod
    def of(cls, identifiers: list[Any]) -> "Scope":
        """The scope of identifiers (data sets, or mappings of keyword to value)."""
        def every(keyword: str) -> frozenset[str]:
            found = [key_value(item.get(keyword, "") or "") for item in identifiers]
            return frozenset(uid for text in found for uid in text.split("\\")) if all(found) else frozenset()

        return cls(every("StudyInstanceUID"), every("SeriesInstanceUID"))

    def __bool__(self) -> bool:
        return bool(self.studies or self.series)

    def contains(self, study: str, series: str) -> bool:
        return (not self.studies or study in self.studies) and (not self.series or series in self.series)


def check_identifier(values: Mapping[str, str], model: "Model", level: str, operation: str) -> None:
    """A retrieval identifier's rules, whatever holds it: no wildcards (the manual: "no wildcards are
    allowed"), and the unique key of the level retrieved has a value.  `values`: keyword -> text of the
    keys that have a value."""
    if not model.levels:
        raise UsageError(f"the {model.title} model has no {operation}: use the patient root or study root model")
    from dicomscu.files.probe import valid_uid
    from dicomscu.printable import printable

    for keyword, text in values.items():
        if keyword == "QueryRetrieveLevel":
            continue
        shown = printable(text if len(text) <= 80 else text[:80] + "...")
        if "*" in text or "?" in text:
            raise UsageError(f"{operation} allows no wildcards: {keyword}={shown} "
                             "(find the exact values with --find first)")
        if keyword.endswith("UID"):
            bad = next((uid for uid in text.split("\\") if not valid_uid(uid)), None)
            if bad is not None:
                raise UsageError(f"{operation}: {keyword}={shown} is not a UID ({printable(bad[:80])!r}: a UID is "
                                 "up to 64 digits and dots)")
        elif len(text) > 64 or printable(text) != text:  # control characters: printable's rule, C1 included
            raise UsageError(f"{operation}: {keyword}={shown} is not a key value (at most 64 characters, no "
                             "control characters)")
    unique = model.level(level).unique
    if not values.get(unique):
        raise UsageError(f"{operation} at the {level} level needs a value for {unique}: add "
                         f"-k {unique}=VALUE (find it with --find --{level.lower()})")


def key_value(value) -> str:
    """A -k value from an identifier's element (a UID list in its backslash-separated form)."""
    return "\\".join(map(str, value)) if isinstance(value, MutableSequence) else str(value)


def refused_note(report: RetrieveReport) -> str:
    if not report.refused_classes:
        return ""
    from pydicom.uid import UID

    names = ", ".join(f"{UID(uid).name} ({uid})" for uid in report.refused_classes)
    return f" - the server would not send us these SOP classes (storage role refused): {names}"
