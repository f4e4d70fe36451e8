"""The tuned socket and reactor for associations we accept (``dicomscu serve``, the C-MOVE SCP).

pynetdicom's server builds each incoming association in
``RequestHandler._create_association``; this subclass swaps in
:class:`~.dul.EventDrivenDUL` and :class:`~.socket.TunedSocket` before the
association starts, so accepted associations get the same TCP tuning, wake-up
latency and bounded reads as the ones we request, and replaces the association's
own polling loop with one that waits on its message queue.
"""

from __future__ import annotations

import logging
import queue
import ssl
import sys
import types
from typing import Callable

from pydicom.uid import UID
from pynetdicom import evt
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from dicomscu.transport.assembly import Assembler
from dicomscu.transport.dimse import StoreRequest, c_store_rsp, p_data_tf, parse_store_request

from dicomscu.transport.dul import EventDrivenDUL
from dicomscu.transport.socket import TunedSocket

LOGGER = logging.getLogger("dicomscu.transport")

#: A peer that takes longer than this to send the rest of a PDU header or body is dropped (a whole-read
#: deadline, not per byte: a slowloris sending a byte every few seconds is dropped all the same).
READ_TIMEOUT = 30.0
#: A connection has this long to complete its TLS handshake (in its own thread: the accept loop never waits).
HANDSHAKE_TIMEOUT = 10.0
#: ARTIM (PS3.8 9.1.5): a connection that has not sent its A-ASSOCIATE-RQ within this long is dropped.
ARTIM = 10.0


#: Longest the acceptor's thread waits for a DIMSE message before checking release/abort.
TICK = 0.005


#: on_store(sop_class, sop_instance, dataset_bytes, transfer_syntax) -> status
StoreCallback = Callable[[str, str, bytes, UID], int]


class TunedAssociationServer(ThreadedAssociationServer):
    """pynetdicom's server, with the TLS handshake moved from the accept loop to each connection's thread.

    pynetdicom wraps each accepted socket with a blocking handshake in the accept loop:
    one idle plain TCP connection to a TLS port would keep every other client out.
    """

    daemon_threads = True

    def get_request(self):
        client, address = self.socket.accept()
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address

    def handle_error(self, request, client_address) -> None:  # one line, not socketserver's traceback
        LOGGER.warning("connection from %s ended: %s", client_address, sys.exc_info()[1])


class TunedRequestHandler(RequestHandler):
    #: Set by :func:`tune`: plain C-STORE-RQs are decoded and answered directly with it.
    on_store: StoreCallback | None = None
    #: Set by :func:`tune`: a C-STORE data set larger than this is not kept, and refused.
    max_size: int | None = None

    def handle(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.settimeout(HANDSHAKE_TIMEOUT)
                self.request.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                LOGGER.warning("TLS handshake with %s failed: %s", self.client_address[0], exc)
                self.request.close()
                return
        super().handle()

    def _create_association(self):
        assoc = super()._create_association()
        assoc.dul = EventDrivenDUL(assoc)  # its DUL thread is not started yet
        assoc.acse_timeout = min(assoc.acse_timeout or ARTIM, ARTIM)  # the new DUL's ARTIM timer too
        assoc.dul.socket = TunedSocket(assoc, client_socket=self.request, read_timeout=READ_TIMEOUT,
                                       max_pdu=self.ae.maximum_pdu_size)
        if self.on_store is not None:
            assoc.dul.pdata_sink = Assembler(assoc.dimse, parse_store_request, self.max_size)
            assoc.dicomscu_on_store = self.on_store
            assoc.dicomscu_max_size = self.max_size
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
        if isinstance(message, StoreRequest):
            _answer_store(assoc, context_id, message)
        elif message:
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


def _answer_store(assoc, context_id: int, request: StoreRequest) -> None:
    """Store one instance with the server's callback and send the C-STORE-RSP, both directly."""
    context = next((cx for cx in assoc.accepted_contexts if cx.context_id == context_id), None)
    if context is None:
        LOGGER.error("C-STORE-RQ on presentation context %d, which was never accepted: aborting", context_id)
        assoc.abort()
        return
    if context.abstract_syntax != request.AffectedSOPClassUID:
        status = 0x0122  # Refused: SOP Class not supported (on this context)
    elif request.oversize:
        LOGGER.warning("refused %s: its data set is larger than --max-size (%d bytes)",
                       request.AffectedSOPInstanceUID, assoc.dicomscu_max_size)
        status = 0xA700  # Refused: out of resources
    else:
        try:
            status = assoc.dicomscu_on_store(request.AffectedSOPClassUID, request.AffectedSOPInstanceUID,
                                             request.dataset or b"", context.transfer_syntax[0])
        except Exception as exc:  # a bug must not kill the association thread
            LOGGER.error("storing %s failed: %s", request.AffectedSOPInstanceUID, exc)
            status = 0x0110  # Processing failure
    response = c_store_rsp(request.MessageID, request.AffectedSOPClassUID, request.AffectedSOPInstanceUID, status)
    if assoc.dul.state_machine.current_state != "Sta6":
        return
    try:
        assoc.dul.socket.send_buffers(p_data_tf(context_id, response, None, int(assoc.requestor.maximum_length or 0)))
    except OSError:
        return  # the connection is gone: the reactor sees it and ends the association


#: How long stopping a listener may wait for its accept loop (socketserver's default is 0.5 s, which
#: every C-MOVE to ourselves would pay once more at its end).
POLL = 0.02


def support_storage(ae, sop_classes, syntaxes, **roles) -> None:
    """Add a supported context per storage class to `ae`, each with `syntaxes`.

    Some 200 classes times 45 syntaxes are 9,000 UIDs, which pydicom would check one by
    one (0.2 s at every C-MOVE); ours are constants (tests/test_storage_classes.py checks
    them), so checking is off while they are added.
    """
    from pydicom import config

    mode, config.settings.reading_validation_mode = config.settings.reading_validation_mode, config.IGNORE
    try:
        for uid in sop_classes:
            ae.add_supported_context(uid, syntaxes, **roles)
    finally:
        config.settings.reading_validation_mode = mode


def listen(ae, address: tuple[str, int], evt_handlers: list, on_store: StoreCallback | None = None,
           ssl_context=None, max_size: int | None = None):
    """Accept associations for `ae` on `address` in a background thread, tuned from the first one."""
    import threading

    server = ae.make_server(address, evt_handlers=evt_handlers, ssl_context=ssl_context,
                            server_class=TunedAssociationServer)
    tune(server, on_store, max_size)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL}, daemon=True,
                     name=f"listener-{address[1]}").start()
    return server


def stop(server) -> None:
    """Stop accepting and close the listening socket (associations under way run to their end)."""
    import socketserver

    socketserver.BaseServer.shutdown(server)
    server.server_close()


def tune(server, on_store: StoreCallback | None = None, max_size: int | None = None) -> None:
    """Make `server` (from ``AE.start_server``) create tuned associations from now on.

    With `on_store`, plain C-STORE requests skip pynetdicom's DIMSE decoding and its
    EVT_C_STORE machinery: `on_store` gets the data set bytes and returns the status.
    """
    server.RequestHandlerClass = type("TunedStoreHandler", (TunedRequestHandler,),
                                      {"on_store": staticmethod(on_store), "max_size": max_size}
                                      ) if on_store else TunedRequestHandler
