"""Echo over DICOMweb: does the service answer QIDO-RS?  (PS3.18 has no C-ECHO; a one-study query is the
cheapest request every QIDO-RS service answers.)  Loads no data-set library, as a C-ECHO does not."""

from __future__ import annotations

import time

from dicomscu.operations.echo import EchoResult
from dicomscu.operations.status import Status
from dicomscu.web.service import WebPeer, WebService


def echo(peer: WebPeer) -> EchoResult:
    """The service's answer to a QIDO-RS request for one study, timed; raises a DicomscuError if none."""
    started = time.perf_counter()
    with WebService(peer) as service:
        service.request("GET", "/studies", fields={"limit": "1"}, headers={"Accept": "application/dicom+json"},
                        what="QIDO-RS echo")
    return EchoResult(peer, Status(0x0000, "success", ""), time.perf_counter() - started)  # type: ignore[arg-type]
