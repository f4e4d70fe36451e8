"""Associations on pynetdicom with tuned sockets, bounded reads and clear failures."""

from dicomscu.transport.association import Channel, associate, resolve
from dicomscu.transport.peer import Peer, Timeouts

__all__ = ["Channel", "Peer", "Timeouts", "associate", "resolve"]
