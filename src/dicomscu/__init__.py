"""dicomscu: a DICOM network client (echo, store, find, move, get) that is a drop-in for gdcmscu.

The command line (``dicomscu ...``) only parses and prints; everything it does is
available from Python::

    import dicomscu
    peer = dicomscu.Peer("pacs.example.org", 11112, called_ae="PACS")
    dicomscu.echo(peer)
    report = dicomscu.store(peer, ["study/"], dicomscu.StoreOptions(recursive=True, jobs=4))
    query = dicomscu.build_query("studyroot", "study", ["PatientName=A*", "StudyDate"])
    dicomscu.find(peer, query, on_answer=print)
    dicomscu.get(peer, query, dicomscu.RetrieveOptions(output="out"))
    with dicomscu.Association(peer, query_models=["studyroot"]) as assoc:  # one association, many operations
        assoc.echo()
        for answer in assoc.find(query):  # a generator: answers as they arrive
            print(answer.PatientName)

Names are imported on first use (PEP 562), so that the command line can start
without loading pydicom before it knows it needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Peer": "dicomscu.transport.peer",
    "Timeouts": "dicomscu.transport.peer",
    "TLS": "dicomscu.transport.peer",
    "echo": "dicomscu.operations.echo",
    "EchoResult": "dicomscu.operations.echo",
    "store": "dicomscu.operations.store",
    "find": "dicomscu.operations.find",
    "get": "dicomscu.operations.retrieve",
    "move": "dicomscu.operations.retrieve",
    "store_on_cluster": "dicomscu.operations.cluster",
    "retrieve_on_cluster": "dicomscu.operations.cluster",
    "StoreOptions": "dicomscu.operations.options",
    "FindOptions": "dicomscu.operations.options",
    "CommitOptions": "dicomscu.operations.options",
    "RetrieveOptions": "dicomscu.operations.retrieval",
    "RetrieveReport": "dicomscu.operations.retrieval",
    "Association": "dicomscu.operations.session",
    "commit": "dicomscu.operations.commit",
    "CommitReport": "dicomscu.operations.commit",
    "Reference": "dicomscu.operations.commitment",
    "Failure": "dicomscu.operations.commitment",
    "serve": "dicomscu.server.embedded",
    "Served": "dicomscu.server.embedded",
    "FindReport": "dicomscu.operations.find",
    "build_query": "dicomscu.query.build",
    "Query": "dicomscu.query.build",
    "StoreReport": "dicomscu.operations.store",
    "FileResult": "dicomscu.operations.store",
    "DicomscuError": "dicomscu.errors",
    "UsageError": "dicomscu.errors",
    "ConnectionFailed": "dicomscu.errors",
    "UnknownHost": "dicomscu.errors",
    "PeerTimeout": "dicomscu.errors",
    "AssociationRejected": "dicomscu.errors",
    "AssociationAborted": "dicomscu.errors",
    "OperationFailed": "dicomscu.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # what type checkers see: the same names, imported (tests/test_api_types.py keeps them equal)
    from dicomscu.errors import (
        AssociationAborted as AssociationAborted,
        AssociationRejected as AssociationRejected,
        ConnectionFailed as ConnectionFailed,
        DicomscuError as DicomscuError,
        OperationFailed as OperationFailed,
        PeerTimeout as PeerTimeout,
        UnknownHost as UnknownHost,
        UsageError as UsageError,
    )
    from dicomscu.operations.cluster import (
        retrieve_on_cluster as retrieve_on_cluster,
        store_on_cluster as store_on_cluster,
    )
    from dicomscu.operations.commit import CommitReport as CommitReport, commit as commit
    from dicomscu.operations.commitment import Failure as Failure, Reference as Reference
    from dicomscu.operations.echo import EchoResult as EchoResult, echo as echo
    from dicomscu.operations.find import FindReport as FindReport, find as find
    from dicomscu.operations.options import (
        CommitOptions as CommitOptions,
        FindOptions as FindOptions,
        StoreOptions as StoreOptions,
    )
    from dicomscu.operations.retrieval import RetrieveOptions as RetrieveOptions, RetrieveReport as RetrieveReport
    from dicomscu.operations.retrieve import get as get, move as move
    from dicomscu.operations.session import Association as Association
    from dicomscu.operations.store import FileResult as FileResult, StoreReport as StoreReport, store as store
    from dicomscu.query.build import Query as Query, build_query as build_query
    from dicomscu.server.embedded import Served as Served, serve as serve
    from dicomscu.transport.peer import TLS as TLS, Peer as Peer, Timeouts as Timeouts


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'dicomscu' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
