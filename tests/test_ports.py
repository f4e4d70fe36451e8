"""Ports chosen for listeners named before they listen: never where outgoing connections take theirs."""

from __future__ import annotations

import socket

from dicomscu.transport.ports import _ephemeral_range, free_port


def test_a_free_port_is_below_the_ephemeral_range_free_and_not_given_twice():
    low, _ = _ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50 and all(1024 <= port < low for port in ports)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", ports[0]))  # free indeed
        listener.listen()

