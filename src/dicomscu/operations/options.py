"""What a store, a find or a commitment request is asked to do: one frozen object per operation, checked once.

The command line fills these from its option table (each field is an option's
``api`` name, see :mod:`dicomscu.cli.options`) and the Python API takes them as
they are, so a value is checked in one place whichever way it came: ``jobs=40``
from Python and ``-j 40`` on the command line fail with the same
:class:`~dicomscu.errors.UsageError`, its ``option`` naming the field (rendered
``--jobs`` by the command line).  Retrieval's options are
:class:`~dicomscu.operations.retrieval.RetrieveOptions`, beside the retrieval
report.  Kept free of pydicom: the command line builds these before anything is sent.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, Union

from dicomscu.errors import UsageError
from dicomscu.transport.peer import check_port

if TYPE_CHECKING:  # pragma: no cover
    from dicomscu.operations.retrieval import RetrieveOptions

#: How long a commitment request waits for its results by default, in seconds.
COMMIT_TIMEOUT = 60.0
#: Instances per N-ACTION request (a request's data set stays well under a megabyte).
COMMIT_BATCH = 1000
#: Most associations (or DICOMweb connections) one operation opens at once.
MAX_JOBS = 32


class Records(Protocol):
    """What keeps a journal: a :class:`~dicomscu.files.journal.Journal`, or a layered one on a cluster's worker."""

    def __contains__(self, uid: str, /) -> bool: ...

    def record(self, uid: str, path: str, peer: str, /) -> None: ...


#: A journal as the operations take it: an open one, or the path of one (opened for the peer).
JournalLike = Union[Records, str, "os.PathLike[str]", None]

_Options = TypeVar("_Options", "StoreOptions", "FindOptions", "CommitOptions", "RetrieveOptions")


def _check_jobs(jobs: object) -> None:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or not 1 <= jobs <= MAX_JOBS:
        raise UsageError(f"{jobs!r}: give 1 to {MAX_JOBS} parallel associations", option="jobs")


def _check_seconds(value: object, option: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UsageError(f"{value!r}: give a positive number of seconds", option=option)


def _check_journal(journal: object) -> None:
    """A path, or what keeps a journal (a :class:`~dicomscu.files.journal.Journal`, or a layered one on a cluster's
    worker): something that knows instances and records them."""
    if journal is None or isinstance(journal, (str, os.PathLike)):
        return
    if not (hasattr(journal, "__contains__") and callable(getattr(journal, "record", None))):
        raise UsageError(f"{journal!r}: give the path of a journal file, or an open Journal", option="journal")


def _check_port_scp(port_scp: object) -> None:
    if port_scp is not None:
        check_port(port_scp, option="port_scp")  # type: ignore[arg-type]


def _check_switch(value: object, option: str) -> None:
    if not isinstance(value, bool):
        raise UsageError(f"{value!r}: give True or False", option=option)


@dataclass(frozen=True)
class StoreOptions:
    """How :func:`~dicomscu.operations.store.store` (or STOW-RS, or a cluster) sends files."""

    #: Walk directories' subdirectories too.
    recursive: bool = False
    #: Send compressed files uncompressed (else only when the peer refuses their syntax).
    decompress: bool = False
    #: Associations (DICOMweb connections, per worker on a cluster) at once, the files split by size.
    jobs: int = 1
    #: Records each instance the peer confirmed; a re-run skips them.
    journal: JournalLike = None
    #: Ask the peer afterwards to commit what it stored (DIMSE only).
    commit: bool = False
    #: How long the commitment results are awaited (None: :data:`COMMIT_TIMEOUT`).
    commit_timeout: float | None = None
    #: Where a commitment result sent on an association of the peer's own arrives.
    port_scp: int | None = None

    def __post_init__(self) -> None:
        for name in ("recursive", "decompress", "commit"):
            _check_switch(getattr(self, name), name)
        _check_jobs(self.jobs)
        _check_journal(self.journal)
        _check_seconds(self.commit_timeout, "commit_timeout")
        _check_port_scp(self.port_scp)

    @property
    def commitment(self) -> "CommitOptions":
        """What the commitment request after the store is asked to do."""
        return CommitOptions(port_scp=self.port_scp, timeout=self.commit_timeout or COMMIT_TIMEOUT,
                             journal=self.journal)


@dataclass(frozen=True)
class FindOptions:
    """How :func:`~dicomscu.operations.find.find` (or QIDO-RS) asks."""

    #: Stop after this many matches (a C-CANCEL; over DICOMweb, the last page is asked for no more).
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int)
                                       or self.limit < 1):
            raise UsageError(f"{self.limit!r}: give at least 1 match", option="limit")


@dataclass(frozen=True)
class CommitOptions:
    """How :func:`~dicomscu.operations.commit.commit` asks for storage commitment."""

    #: Where results sent on an association the peer opens back to us arrive (its AE table must know ours there).
    port_scp: int | None = None
    #: How long results are awaited, in seconds.
    timeout: float = COMMIT_TIMEOUT
    #: Skips instances committed in an earlier run; records those committed now.
    journal: JournalLike = None
    #: Root of the Transaction UIDs (default: dicomscu's).
    root_uid: str | None = None
    #: Instances per N-ACTION request.
    batch: int = COMMIT_BATCH

    def __post_init__(self) -> None:
        _check_port_scp(self.port_scp)
        if self.timeout is None:
            raise UsageError("None: give a positive number of seconds", option="commit_timeout")
        _check_seconds(self.timeout, "commit_timeout")
        _check_journal(self.journal)
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise UsageError(f"{self.batch!r}: at least one instance per request", option="commit_batch")


def check_retrieval(options: "RetrieveOptions") -> None:
    """What a :class:`~dicomscu.operations.retrieval.RetrieveOptions` must hold (checked as it is made)."""
    from dicomscu.choices import LAYOUTS
    from dicomscu.transport.peer import check_ae_title

    if not isinstance(options.output, (str, os.PathLike)):
        raise UsageError(f"{options.output!r}: give a directory", option="output")
    if options.layout not in LAYOUTS:
        raise UsageError(f"{options.layout!r}: choose flat or hierarchical", option="layout")
    for name in ("accept_all_syntaxes", "skip_existing"):
        _check_switch(getattr(options, name), name)
    if options.move_destination is not None:
        if not isinstance(options.move_destination, str):
            raise UsageError(f"{options.move_destination!r}: give an AE title", option="move_destination")
        check_ae_title(options.move_destination, option="move_destination")
    _check_port_scp(options.port_scp)
    _check_jobs(options.jobs)


def given(options: _Options | None, kind: type[_Options], **keywords: Any) -> _Options:
    """`options` (else `kind`'s defaults) with the keywords not None put in: the API's keyword form
    (``store(peer, paths, jobs=4)``) and the options form meet here, and are checked by the options' own
    ``__post_init__`` either way."""
    if options is not None and not isinstance(options, kind):
        raise UsageError(f"{options!r}: give a {kind.__name__}", option="options")
    chosen = {name: value for name, value in keywords.items() if value is not None}
    base = options if options is not None else kind()
    return dataclasses.replace(base, **chosen) if chosen else base
