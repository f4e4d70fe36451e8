"""The one object the command line is parsed into: what to do, with whom, on what."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dicomscu.choices import LevelName, ModelName
from dicomscu.errors import UsageError
from dicomscu.operations.options import CommitOptions, FindOptions, StoreOptions
from dicomscu.operations.retrieval import RetrieveOptions
from dicomscu.transport.peer import Peer

if TYPE_CHECKING:  # pragma: no cover
    from dicomscu.web.service import WebPeer


# Log levels, from quiet to chatty (gdcmscu's -E, -W, -V, -D).
ERROR, WARNING, VERBOSE, DEBUG = "error", "warning", "verbose", "debug"


@dataclass
class Request:
    """A fully parsed and validated command line.

    ``action`` is what the program does: ``"run"`` an operation, or print
    ``"help"``, ``"version"`` or ``"queryhelp"``.
    """

    action: str = "run"
    operation: str = "echo"
    peer: Peer | None = None
    #: A DICOMweb service, when the peer was given as a URL (then `peer` is None).
    web: "WebPeer | None" = None
    # C-STORE (what the store is asked to do is in `store`)
    files: list[str] = field(default_factory=list)
    # Query / retrieve (C-FIND, C-MOVE, C-GET)
    model: ModelName | None = None
    level: LevelName | None = None
    keys: list[str] = field(default_factory=list)
    store_query: str | None = None
    format: str | None = None  # None: a table on a terminal, a dump otherwise
    charset: str | None = None  # None: from the locale
    cluster: str | None = None  # a Dask scheduler address (--cluster)
    max_per_peer: int | None = None  # --max-associations-per-peer
    then: str | None = None  # "get" or "move" after a --find
    from_json: str | None = None  # identifiers for --get/--move from a --format json file ("-": stdin)
    #: Each operation's options object, filled from the option table (the same objects the Python API takes).
    store: StoreOptions = field(default_factory=StoreOptions)
    find: FindOptions = field(default_factory=FindOptions)
    retrieve: RetrieveOptions = field(default_factory=RetrieveOptions)
    #: ``--commit`` alone (the operation "commit", for files already sent); after a --store, ``store.commitment``.
    commitment: CommitOptions = field(default_factory=CommitOptions)
    # General
    root_uid: str | None = None
    log_level: str = WARNING
    log_file: str | None = None
    progress: bool | None = None  # None: automatic (a terminal gets a progress bar)
    config: str | None = None  # server profiles file (--config)
    #: Run state, not an option: a --find's JSON answer array is open on stdout (a failure before it prints []).
    answers_opened: bool = False

    @property
    def target(self) -> Peer:
        """The peer of an operation (the parser has made sure there is one)."""
        if self.peer is None:
            raise UsageError("hostname missing: give it as the first argument or with -H")
        return self.peer
