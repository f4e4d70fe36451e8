"""dicomscu: a DICOM network client (echo, store, find, move, get) that is a drop-in for gdcmscu.

The command line (``dicomscu ...``) only parses and prints; everything it does is
available from Python::

    import dicomscu
    peer = dicomscu.Peer("pacs.example.org", 11112, called_ae="PACS")
    dicomscu.echo(peer)
    report = dicomscu.store(peer, ["study/"], recursive=True)
"""

__version__ = "0.1.0"

from dicomscu.errors import (  # noqa: E402
    AssociationAborted,
    AssociationRejected,
    ConnectionFailed,
    DicomscuError,
    OperationFailed,
    PeerTimeout,
    UnknownHost,
    UsageError,
)
from dicomscu.transport.peer import Peer, Timeouts  # noqa: E402
from dicomscu.operations.echo import EchoResult, echo  # noqa: E402
from dicomscu.operations.store import FileResult, StoreReport, store  # noqa: E402


__all__ = [
    "__version__",
    "Peer",
    "Timeouts",
    "echo",
    "EchoResult",
    "store",
    "StoreReport",
    "FileResult",
    "DicomscuError",
    "UsageError",
    "ConnectionFailed",
    "UnknownHost",
    "PeerTimeout",
    "AssociationRejected",
    "AssociationAborted",
    "OperationFailed",
]
