"""The storage SCP that receives the instances of a C-MOVE sent to ourselves.

It listens on ``--port-scp`` under our calling AE title while the move runs, on
the same protocol core as everything else.  Incoming data sets are not decoded:
their bytes go to :class:`~dicomscu.files.instances.InstanceWriter` as received.
"""

from __future__ import annotations

import errno
import threading

from dicomscu.errors import UsageError
from dicomscu.files.instances import InstanceWriter
from dicomscu.operations.provider import Provider
from dicomscu.storage_classes import STORAGE_UIDS
from dicomscu.transport.listener import AcceptPolicy, Listener
from dicomscu.uids import VERIFICATION, IMPLICIT_VR_LE


class StorageSCP:
    """A context manager: listening inside the block, stopped (and joined) after it."""

    def __init__(self, ae_title: str, port: int, writer: InstanceWriter, syntaxes: list[str], report,
                 on_progress=None) -> None:
        self.port = port
        self._writer = writer
        self._report = report
        self._on_progress = on_progress
        self._lock = threading.Lock()
        supported = {uid: tuple(syntaxes) for uid in STORAGE_UIDS}
        supported[VERIFICATION] = (IMPLICIT_VR_LE,)
        self._listener = Listener(("", port), AcceptPolicy(ae_title, supported), Provider(self.store).serve)

    @property
    def connections(self) -> int:
        """Connections the server opened back to us: tells an unreachable destination from refused data."""
        return self._listener.connections

    def __enter__(self) -> "StorageSCP":
        try:
            self._listener.start()
        except OSError as exc:
            raise UsageError(self._bind_problem(exc)) from None
        return self

    def __exit__(self, *exc_info) -> None:
        self._listener.stop()
        self._listener.wait(grace=5.0)

    def _bind_problem(self, exc: OSError) -> str:
        if exc.errno == errno.EADDRINUSE:
            return f"--port-scp {self.port}: the port is already in use by another program"
        if exc.errno == errno.EACCES:
            return (f"--port-scp {self.port}: ports below 1024 need root privileges; "
                    "use a port above 1024 and map it on the server")
        return f"--port-scp {self.port}: cannot listen: {exc.strerror or exc}"

    def store(self, sop_class: str, sop_instance: str, raw: bytes | bytearray, syntax: str) -> int:
        from dicomscu.operations.retrieve import store_instance

        with self._lock:  # one association at a time writes the report
            status = store_instance(self._writer, raw, sop_class, sop_instance, syntax, self._report)
            if self._on_progress is not None:
                self._on_progress(self._report)
        return status
