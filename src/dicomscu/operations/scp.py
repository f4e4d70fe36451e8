"""The storage SCP that receives the instances of a C-MOVE sent to ourselves.

A pynetdicom server listening on ``--port-scp`` under our calling AE title while
the move runs.  Incoming data sets are not decoded: their bytes go to
:class:`~dicomscu.files.instances.InstanceWriter` as received.
"""

from __future__ import annotations

import errno
import threading

from pynetdicom import AE, evt

from dicomscu.errors import UsageError
from dicomscu.files.instances import InstanceWriter
from dicomscu.storage_classes import STORAGE_UIDS
from dicomscu.transport import server as tuned_server


class StorageSCP:
    """A context manager: listening inside the block, stopped (and joined) after it."""

    def __init__(self, ae_title: str, port: int, writer: InstanceWriter, syntaxes: list[str], report,
                 on_progress=None) -> None:
        self.port = port
        self._writer = writer
        self._report = report
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._ae = AE(ae_title=ae_title)
        self._ae.maximum_pdu_size = 0
        tuned_server.support_storage(self._ae, STORAGE_UIDS, syntaxes)
        self._server = None
        #: Associations the server opened back to us (TCP connections, then established ones):
        #: they tell an unknown or unreachable destination from a refused transfer syntax.
        self.connections = 0
        self.established = 0

    def __enter__(self) -> "StorageSCP":
        try:
            self._server = tuned_server.listen(self._ae, ("", self.port), [
                (evt.EVT_C_STORE, self._on_store), (evt.EVT_CONN_OPEN, self._on_connection),
                (evt.EVT_ESTABLISHED, self._on_established)], on_store=self.store)
        except OSError as exc:
            raise UsageError(self._bind_problem(exc)) from None
        return self

    def __exit__(self, *exc_info) -> None:
        if self._server is not None:
            tuned_server.stop(self._server)

    def _bind_problem(self, exc: OSError) -> str:
        if exc.errno == errno.EADDRINUSE:
            return f"--port-scp {self.port}: the port is already in use by another program"
        if exc.errno == errno.EACCES:
            return (f"--port-scp {self.port}: ports below 1024 need root privileges; "
                    "use a port above 1024 and map it on the server")
        return f"--port-scp {self.port}: cannot listen: {exc.strerror or exc}"

    def _on_connection(self, _event) -> None:
        with self._lock:
            self.connections += 1

    def _on_established(self, _event) -> None:
        with self._lock:
            self.established += 1

    def _on_store(self, event) -> int:
        request = event.request
        raw = request.DataSet.getvalue() if request.DataSet is not None else b""
        return self.store(str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID), raw,
                          event.context.transfer_syntax)

    def store(self, sop_class: str, sop_instance: str, raw: bytes, syntax) -> int:
        from dicomscu.operations.retrieve import store_instance

        with self._lock:  # one association at a time writes the report
            status = store_instance(self._writer, raw, sop_class, sop_instance, syntax, self._report)
            if self._on_progress is not None:
                self._on_progress(self._report)
        return status
