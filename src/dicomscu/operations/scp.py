"""The storage SCP that receives the instances of a C-MOVE sent to ourselves.

It listens on ``--port-scp`` under our calling AE title while the move runs, on
the same protocol core as everything else.  Incoming data sets are not decoded:
their bytes go to the :class:`~dicomscu.operations.sink.InstanceSink` as received.
"""

from __future__ import annotations

import errno

from dicomscu.errors import UsageError
from dicomscu.operations.provider import Provider
from dicomscu.operations.sink import InstanceSink
from dicomscu.storage_classes import STORAGE_UIDS
from dicomscu.transport.listener import AcceptPolicy, Listener
from dicomscu.uids import VERIFICATION, IMPLICIT_VR_LE


class StorageSCP:
    """A context manager: listening inside the block, stopped (and joined) after it."""

    def __init__(self, ae_title: str, port: int, sink: InstanceSink, syntaxes: list[str]) -> None:
        self.port = port
        supported = {uid: tuple(syntaxes) for uid in STORAGE_UIDS}
        supported[VERIFICATION] = (IMPLICIT_VR_LE,)
        self._listener = Listener(("", port), AcceptPolicy(ae_title, supported), Provider(sink.store).serve)

    @property
    def connections(self) -> int:
        """Connections the server opened back to us: tells an unreachable destination from refused data."""
        return self._listener.connections

    def __enter__(self) -> "StorageSCP":
        try:
            self._listener.start()
        except OSError as exc:
            raise UsageError(self._bind_problem(exc), option="port_scp") from None
        return self

    def __exit__(self, *exc_info) -> None:
        self._listener.stop()
        self._listener.wait(grace=5.0)

    def _bind_problem(self, exc: OSError) -> str:
        if exc.errno == errno.EADDRINUSE:
            return f"{self.port}: the port is already in use by another program"
        if exc.errno == errno.EACCES:
            return (f"{self.port}: ports below 1024 need root privileges; "
                    "use a port above 1024 and map it on the server")
        return f"{self.port}: cannot listen: {exc.strerror or exc}"
