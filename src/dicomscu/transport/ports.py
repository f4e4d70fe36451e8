"""A free TCP port for a listener that must be named before it listens (a C-MOVE destination's, say).

The port the kernel gives for ``bind((host, 0))`` comes from its ephemeral range, the range outgoing
connections take their local ports from too: between choosing such a port and listening on it, a connection
(ours to the PACS, or the PACS's to us) may take it, and the listener then fails "already in use" (rarely:
once in a few thousand C-MOVEs on a busy machine).  So the port is chosen at random below the ephemeral
range, where no connection takes its local port, and tried.
"""

from __future__ import annotations

import random
import socket

#: Ports below the ephemeral range that may be chosen (the range's low end less this many, up to it).
_SPAN = 12000
#: The ephemeral range where the kernel says nothing (IANA's; Linux's is in /proc).
_DEFAULT_EPHEMERAL = (49152, 65535)
_given: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as handle:
            low, high = (int(value) for value in handle.read().split())
            return low, high
    except (OSError, ValueError):
        return _DEFAULT_EPHEMERAL


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at `host` now, outside the ephemeral range (the kernel's pick if none is)."""
    low, _ = _ephemeral_range()
    chooser = random.SystemRandom()
    for _ in range(200):
        port = chooser.randrange(max(1024, low - _SPAN), max(1025, low))
        if port in _given:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        _given.add(port)
        return port
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
