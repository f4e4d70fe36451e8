"""C-ECHO: is the server up, and does it accept us?"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dicomscu.errors import OperationFailed
from dicomscu.operations.status import Status, decode
from dicomscu.protocol import commands
from dicomscu.protocol.negotiation import Proposal
from dicomscu.transport.association import associate
from dicomscu.transport.peer import Peer
from dicomscu.uids import IMPLICIT_VR_LE, VERIFICATION


@dataclass(frozen=True)
class EchoResult:
    peer: Peer
    status: Status
    seconds: float  # association + C-ECHO + release


def echo(peer: Peer) -> EchoResult:
    """Send one C-ECHO to `peer`.

    Returns the result on success; raises a :class:`~dicomscu.errors.DicomscuError`
    when the association fails or the status is not success.
    """
    started = time.perf_counter()
    with associate(peer, [Proposal(VERIFICATION, [IMPLICIT_VR_LE])]) as channel:
        context = channel.accepted[0]
        message_id = channel.next_message_id()
        channel.send_encoded(context.context_id, commands.c_echo_rq(message_id), None, "C-ECHO")
        response = channel.receive(message_id, "C-ECHO").command
    status = decode(response.Status, "echo")
    result = EchoResult(peer, status, time.perf_counter() - started)
    if not status.ok:
        raise OperationFailed(f"C-ECHO to {peer} answered {status}")
    return result
