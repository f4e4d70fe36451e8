"""Where an operation goes: one interface for a DIMSE peer, a DICOMweb service, and a DIMSE peer worked through a
Dask cluster.

The command line asks a :class:`Target` to echo, store, find or retrieve, and never
looks at what kind of target it is: :func:`target_for` picks one, and each kind maps
the operation onto its protocol (C-ECHO or a QIDO-RS request, C-STORE or STOW-RS,
C-FIND or QIDO-RS, C-GET/C-MOVE or WADO-RS) or onto the cluster.  An operation a kind
cannot do is a :class:`~dicomscu.errors.UsageError` in its words (a C-MOVE over
DICOMweb, a find on a cluster).  Every method returns the same report types as the
one-shot functions (:class:`EchoResult`, :class:`StoreReport`, :class:`FindReport`,
:class:`RetrieveReport`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from dicomscu.errors import UsageError
from dicomscu.transport.peer import Peer

if TYPE_CHECKING:  # pragma: no cover
    from dicomscu.operations.echo import EchoResult
    from dicomscu.operations.find import FindReport
    from dicomscu.operations.options import FindOptions, StoreOptions
    from dicomscu.operations.results import FileResult, StoreReport
    from dicomscu.operations.retrieval import RetrieveOptions, RetrieveReport
    from dicomscu.query.build import Query
    from dicomscu.web.service import WebPeer


#: What each kind of target refuses, in one place: the command line refuses the same before anything runs.
MOVE_OVER_WEB = ("C-MOVE has no DICOMweb counterpart: use --get with a URL (WADO-RS), or a DIMSE peer (HOST PORT) "
                 "for --move")
COMMIT_OVER_WEB = ("storage commitment (--commit) is a DIMSE service: DICOMweb has no request that an archive took "
                   "responsibility for instances; give the archive's DIMSE address (HOST PORT)")
COMMIT_ON_CLUSTER = ("--commit runs from this machine: store with --cluster first, then ask with dicomscu --commit "
                     "HOST PORT FILES (--journal skips what is committed)")


class Target(Protocol):
    """What every kind of target does, each operation asked by its options object
    (:mod:`dicomscu.operations.options`, :class:`~dicomscu.operations.retrieval.RetrieveOptions`)."""

    #: What the target is, as summaries and journals name it (``str()`` of its peer).
    peer: Any

    #: A retrieval by the retrieval keys alone may skip pydicom (:mod:`dicomscu.query.identifier`); a cluster
    #: splits the work by a C-FIND first, for which it needs a built query.
    light_identifiers: bool

    def retrieval_name(self, operation: str) -> str:
        """How this target names a retrieval of `operation` ("get"/"move"): "C-GET", "WADO-RS"..."""
        ...

    def query_needed(self, identifiers: list | None) -> bool:
        """Whether a retrieval of `identifiers` (None: what a query selects) needs the query built."""
        ...

    def echo(self) -> "EchoResult": ...

    def store(self, paths: Sequence[str], options: "StoreOptions", *, on_plan: Callable | None = None,
              on_result: Callable[["FileResult"], object] | None = None) -> "StoreReport": ...

    def find(self, query: "Query", options: "FindOptions", *, on_answer: Callable | None = None,
             raw: bool = False) -> "FindReport": ...

    def retrieve(self, operation: str, query: "Query | None", options: "RetrieveOptions",
                 identifiers: list | None = None, on_progress: Callable | None = None) -> "RetrieveReport": ...


class DimseTarget:
    """A DICOM application entity reached over the upper layer protocol (TLS or not)."""

    light_identifiers = True

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    def retrieval_name(self, operation: str) -> str:
        return f"C-{operation.upper()}"

    def query_needed(self, identifiers: list | None) -> bool:
        return True  # (a C-GET's survey, a C-MOVE's series split, build on it)

    def echo(self) -> "EchoResult":
        from dicomscu.operations.echo import echo

        return echo(self.peer)

    def store(self, paths, options, *, on_plan=None, on_result=None) -> "StoreReport":
        from dicomscu.operations.store import store

        return store(self.peer, paths, options, on_plan=on_plan, on_result=on_result)

    def find(self, query, options, *, on_answer=None, raw=False) -> "FindReport":
        from dicomscu.operations.find import find

        return find(self.peer, query, options, on_answer=on_answer, raw=raw)

    def retrieve(self, operation, query, options, identifiers=None, on_progress=None) -> "RetrieveReport":
        from dicomscu.operations import retrieve

        if query is None:
            raise UsageError(f"{self.retrieval_name(operation)} needs a query")
        run = retrieve.move if operation == "move" else retrieve.get
        return run(self.peer, query, options, on_progress, identifiers)


class WebTarget:
    """A DICOMweb service: QIDO-RS, WADO-RS and STOW-RS under one base URL."""

    light_identifiers = True

    def __init__(self, web: "WebPeer") -> None:
        self.peer = web

    def query_needed(self, identifiers: list | None) -> bool:
        return identifiers is None  # WADO-RS fetches given identifiers by their UIDs alone

    def retrieval_name(self, operation: str) -> str:
        if operation == "move":
            raise UsageError(MOVE_OVER_WEB)
        return "WADO-RS"

    def echo(self) -> "EchoResult":
        from dicomscu.web.echo import echo

        return echo(self.peer)

    def store(self, paths, options, *, on_plan=None, on_result=None) -> "StoreReport":
        from dicomscu.web import stow

        return stow.store(self.peer, list(paths), options, on_result=on_result)

    def find(self, query, options, *, on_answer=None, raw=False) -> "FindReport":
        from dicomscu.web import qido

        return qido.find(self.peer, query, options, on_answer=on_answer, raw=raw)

    def retrieve(self, operation, query, options, identifiers=None, on_progress=None) -> "RetrieveReport":
        from dicomscu.operations import retrieve
        from dicomscu.web import wado

        name = self.retrieval_name(operation)
        if identifiers is None:
            if query is None:
                raise UsageError(f"{name} needs a query or identifiers")
            identifiers = [retrieve.retrieve_identifier(query, name)]
        return wado.get(self.peer, identifiers, options, on_progress)


class ClusterTarget:
    """A DIMSE peer whose bulk work (store, get, move) runs on the workers of a Dask cluster."""

    light_identifiers = False

    def __init__(self, peer: Peer, scheduler: str, max_per_peer: int | None = None) -> None:
        self.peer = peer
        self.scheduler = scheduler
        self.max_per_peer = max_per_peer

    def retrieval_name(self, operation: str) -> str:
        return f"C-{operation.upper()}"

    def query_needed(self, identifiers: list | None) -> bool:
        return True

    def echo(self) -> "EchoResult":
        raise UsageError("--cluster runs --store, --get and --move (also --find ... --then) on a Dask cluster")

    def find(self, query, options, *, on_answer=None, raw=False) -> "FindReport":
        from dicomscu.operations.find import find  # the survey before a --then runs here; the retrieval there

        return find(self.peer, query, options, on_answer=on_answer, raw=raw)

    def store(self, paths, options, *, on_plan=None, on_result=None) -> "StoreReport":
        from dicomscu.operations.cluster import store_on_cluster

        return store_on_cluster(self.peer, list(paths), options, scheduler=self.scheduler, on_result=on_result,
                                max_per_peer=self.max_per_peer)

    def retrieve(self, operation, query, options, identifiers=None, on_progress=None) -> "RetrieveReport":
        from dicomscu.operations.cluster import retrieve_on_cluster

        return retrieve_on_cluster(self.peer, query, options, identifiers, scheduler=self.scheduler,
                                   operation=operation, max_per_peer=self.max_per_peer, on_progress=on_progress)


def target_for(peer: Peer | None = None, web: "WebPeer | None" = None, cluster: str | None = None,
               max_per_peer: int | None = None) -> Target:
    """The target of an operation: a DICOMweb service when `web` is given, else `peer`, through the cluster at
    `cluster` when given."""
    if web is not None:
        return WebTarget(web)
    if peer is None:
        raise UsageError("hostname missing: give it as the first argument or with -H")
    if cluster:
        return ClusterTarget(peer, cluster, max_per_peer)
    return DimseTarget(peer)
