"""C-ECHO: is the server up, and does it accept us?"""

from __future__ import annotations

import time
from dataclasses import dataclass

from pynetdicom.dimse_primitives import C_ECHO
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from dicomscu.errors import OperationFailed
from dicomscu.operations.status import Status, decode
from dicomscu.transport.association import associate
from dicomscu.transport.peer import Peer


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
    with associate(peer, [build_context(Verification)]) as channel:
        context = channel.accepted[0]
        request = C_ECHO()
        request.MessageID = channel.next_message_id()
        request.AffectedSOPClassUID = Verification
        response = channel.exchange(request, context.context_id, "C-ECHO")
    status = decode(response.Status, "echo")
    result = EchoResult(peer, status, time.perf_counter() - started)
    if not status.ok:
        raise OperationFailed(f"C-ECHO to {peer} answered {status}")
    return result
