"""Associations over a socket pair: a provider served in memory, reached through an ordinary :class:`Peer`.

Operations are tested, and embedded, without a port: :class:`InMemoryPeer` gives a
peer whose host is a name under ``.invalid`` (RFC 2606: it never resolves, so it can
never be mistaken for a real host); :func:`connect_in_memory` is where
:mod:`dicomscu.transport.association` takes the connection for such a host.  Each
connection is a :func:`socket.socketpair`: our end goes to the operation, the other to
the same accepting code a listening server runs (:class:`~.listener.Listener`, its
association limits, ARTIM and PDU deadlines included) in a thread of its own.  Nothing
is mocked: the bytes are the ones a network would carry.
"""

from __future__ import annotations

import itertools
import socket
import threading
from typing import Any, Callable

from dicomscu.transport.channel import Channel
from dicomscu.transport.listener import AcceptPolicy, Listener
from dicomscu.transport.peer import IN_MEMORY_SUFFIX as _SUFFIX, Peer

_SERVERS: dict[str, "InMemoryPeer"] = {}
_NUMBERS = itertools.count(1)
_LOCK = threading.Lock()


def connect_in_memory(host: str) -> socket.socket:
    """Our end of a new connection to the in-memory server named `host` (refused when it is closed)."""
    with _LOCK:
        server = _SERVERS.get(host)
    if server is None:
        from dicomscu.errors import ConnectionFailed

        raise ConnectionFailed(f"connection refused by {host}: that in-memory server is closed")
    return server.connect()


class InMemoryPeer:
    """A provider (`serve`, called with each established association) reachable as :attr:`peer`; a context
    manager that closes it and waits for its associations."""

    def __init__(self, policy: AcceptPolicy, serve: Callable[[Channel], None]) -> None:
        self.host = f"peer-{next(_NUMBERS)}{_SUFFIX}"
        self.policy = policy
        self._listener = Listener(("", 0), policy, serve)  # never bound: it serves what connect() hands it
        with _LOCK:
            _SERVERS[self.host] = self

    def peer(self, **settings: Any) -> Peer:
        """A :class:`Peer` for this server (its AE title called), with any other Peer `settings`."""
        settings.setdefault("called_ae", self.policy.ae_title)
        return Peer(self.host, 104, **settings)

    @property
    def connections(self) -> int:
        return self._listener.connections

    def connect(self) -> socket.socket:
        """Our end of a new connection; the other is served as an accepted one."""
        ours, theirs = socket.socketpair()
        self._listener.take(theirs, (self.host, 0))
        return ours

    def close(self, grace: float = 5.0) -> None:
        with _LOCK:
            _SERVERS.pop(self.host, None)
        self._listener.wait(grace)

    def __enter__(self) -> "InMemoryPeer":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()
