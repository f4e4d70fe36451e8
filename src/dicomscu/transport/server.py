"""The tuned socket and reactor for associations we accept (``dicomscu serve``, the C-MOVE SCP).

pynetdicom's server builds each incoming association in
``RequestHandler._create_association``; this subclass swaps in
:class:`~.dul.EventDrivenDUL` and :class:`~.socket.TunedSocket` before the
association starts, so accepted associations get the same TCP tuning, wake-up
latency and bounded reads as the ones we request, and replaces the association's
own polling loop with one that waits on its message queue.
"""

from __future__ import annotations

import queue
import types

from pynetdicom import evt
from pynetdicom.transport import RequestHandler

from dicomscu.transport.dul import EventDrivenDUL
from dicomscu.transport.socket import TunedSocket

#: A peer that stops sending in the middle of a PDU is dropped after this long.
READ_TIMEOUT = 60.0


#: Longest the acceptor's thread waits for a DIMSE message before checking release/abort.
TICK = 0.005


class TunedRequestHandler(RequestHandler):
    def _create_association(self):
        assoc = super()._create_association()
        assoc.dul = EventDrivenDUL(assoc)  # its DUL thread is not started yet
        assoc.dul.socket = TunedSocket(assoc, client_socket=self.request, read_timeout=READ_TIMEOUT,
                                       max_pdu=self.ae.maximum_pdu_size)
        assoc._run_reactor = types.MethodType(_run_acceptor_reactor, assoc)
        return assoc


def _run_acceptor_reactor(assoc) -> None:
    """pynetdicom's acceptor loop, waking when a DIMSE message arrives instead of every millisecond.

    Same steps, same order, same pause protocol (``_reactor_checkpoint``); only the
    1 ms sleep plus non-blocking ``get_msg`` becomes a blocking get with a short
    timeout, so each request is served the moment it is decoded.
    """
    assoc._is_paused = False
    while not assoc._kill:
        assoc._is_paused = True
        assoc._reactor_checkpoint.wait()
        assoc._is_paused = False
        try:
            context_id, message = assoc.dimse.msg_queue.get(timeout=TICK)
        except queue.Empty:
            message = None
        if message:
            assoc._serve_request(message, context_id)
        if assoc.is_established and assoc.acse.is_release_requested():
            assoc.acse.send_release(is_response=True)
            assoc.is_released = True
            assoc.is_established = False
            evt.trigger(assoc, evt.EVT_RELEASED, {})
            assoc.kill()
            return
        if assoc.acse.is_aborted():
            assoc.dul.receive_pdu(wait=False)
            assoc.is_aborted = True
            assoc.is_established = False
            evt.trigger(assoc, evt.EVT_ABORTED, {})
            assoc.kill()
            return
        if not assoc.dul.is_alive():
            assoc.kill()
            return
        if assoc.dul.idle_timer_expired():
            assoc.abort()
            assoc.kill()
            return


def tune(server) -> None:
    """Make `server` (from ``AE.start_server``) create tuned associations from now on."""
    server.RequestHandlerClass = TunedRequestHandler
