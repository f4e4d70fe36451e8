"""The SCPs the client runs while an operation waits for the peer to connect back to it.

A C-MOVE's instances come on associations the server opens to ``--port-scp``
(:class:`StorageSCP`); so may a storage commitment result (N-EVENT-REPORT, see
:mod:`dicomscu.operations.commit`).  Both listen under our calling AE title while the
operation runs, on the same protocol core as everything else: :class:`IncomingSCP`.
"""

from __future__ import annotations

import errno
from typing import Callable, Iterable, Mapping, Sequence

from dicomscu.errors import UsageError
from dicomscu.operations.provider import Provider
from dicomscu.operations.sink import InstanceSink
from dicomscu.storage_classes import STORAGE_UIDS
from dicomscu.transport.channel import Channel
from dicomscu.transport.listener import AcceptPolicy, Listener
from dicomscu.uids import VERIFICATION, IMPLICIT_VR_LE


class IncomingSCP:
    """A context manager: listening on `port` inside the block, stopped (and joined) after it."""

    def __init__(self, ae_title: str, port: int, supported: Mapping[str, Sequence[str]],
                 serve: Callable[[Channel], None], roles_allowed: Iterable[str] = ()) -> None:
        self.port = port
        policy = AcceptPolicy(ae_title, {VERIFICATION: (IMPLICIT_VR_LE,), **supported},
                              roles_allowed=frozenset(roles_allowed))
        self._listener = Listener(("", port), policy, serve)

    @property
    def connections(self) -> int:
        """Connections the server opened back to us: tells an unreachable destination from refused data."""
        return self._listener.connections

    def __enter__(self):
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


class StorageSCP(IncomingSCP):
    """The storage SCP that receives the instances of a C-MOVE sent to ourselves: incoming data sets are not
    decoded, their bytes go to the :class:`~dicomscu.operations.sink.InstanceSink` as received."""

    def __init__(self, ae_title: str, port: int, sink: InstanceSink, syntaxes: list[str]) -> None:
        super().__init__(ae_title, port, {uid: tuple(syntaxes) for uid in STORAGE_UIDS}, Provider(sink.store).serve)
