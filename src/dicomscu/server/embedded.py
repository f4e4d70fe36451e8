"""``dicomscu.serve(...)``: the embedded PACS from Python, on ports the OS chooses, as a context manager.

::

    with dicomscu.serve("pacs-storage", http_port=0) as pacs:
        dicomscu.store(pacs.peer, ["study/"], recursive=True)
        dicomscu.find(pacs.peer, dicomscu.build_query("studyroot", "study", ["PatientID"]), on_answer=print)
        print(pacs.port, pacs.url)  # DIMSE port, DICOMweb URL

Ports 0 (the default) are chosen by the OS when the server binds: no race between choosing a free port
and listening on it.  Every other setting is :class:`~dicomscu.server.pacs.ServerConfig`'s.
"""

from __future__ import annotations

import os
from typing import Any

from dicomscu.server.pacs import Pacs, ServerConfig
from dicomscu.transport.peer import Peer


class Served:
    """A running embedded PACS: where to reach it, and :meth:`stop` (or leave the ``with`` block)."""

    def __init__(self, pacs: Pacs) -> None:
        self.pacs = pacs

    @property
    def port(self) -> int:
        return self.pacs.port

    @property
    def http_port(self) -> int | None:
        return self.pacs.http_port

    @property
    def peer(self) -> Peer:
        """A Peer for the DIMSE side (called AE the server's own)."""
        host = self.pacs.config.host or "127.0.0.1"
        return Peer(host if host not in ("0.0.0.0", "::") else "127.0.0.1", self.port,
                    called_ae=self.pacs.config.aetitle)

    @property
    def url(self) -> str | None:
        """The DICOMweb base URL, when the HTTP side runs."""
        if self.http_port is None:
            return None
        scheme = "https" if self.pacs.config.tls else "http"
        return f"{scheme}://{self.pacs.config.http_bind or '127.0.0.1'}:{self.http_port}/dicom-web"

    @property
    def storage(self) -> str:
        return self.pacs.storage

    def stop(self) -> None:
        self.pacs.stop()

    def __enter__(self) -> "Served":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def serve(storage: str | os.PathLike[str], *, port: int = 0, host: str = "127.0.0.1", aetitle: str = "DICOMSCU",
          http_port: int | None = None, **settings: Any) -> Served:
    """Start the embedded PACS on `storage` (made if missing) and return it running; ``port=0`` and
    ``http_port=0`` let the OS choose.  Raises UsageError for an unusable storage or address."""
    config = ServerConfig(port=port, host=host, aetitle=aetitle, storage=os.fspath(storage), http_port=http_port,
                          **settings)
    pacs = Pacs(config)
    pacs.start()
    return Served(pacs)
