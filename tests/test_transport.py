"""The transport's own pieces: direct DIMSE encoding equals pynetdicom's, and the tuned association."""

from __future__ import annotations

import socket
from io import BytesIO

from pydicom.uid import CTImageStorage
from pynetdicom.dimse_messages import C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

from dicomscu import Peer
from dicomscu.transport import dimse
from dicomscu.transport.association import associate
from dicomscu.transport.dul import EventDrivenDUL
from dicomscu.transport.socket import TunedSocket


def pynetdicom_command(primitive, message_class) -> bytes:
    message = message_class()
    message.primitive_to_message(primitive)
    return encode(message.command_set, True, True)


def test_c_store_rq_encoding_matches_pynetdicom():
    for message_id, instance in [(1, "1.2.3.4"), (65535, "1.2.826.0.1.3680043.10.1137.3.1000.1.1.0")]:
        request = C_STORE()
        request.MessageID = message_id
        request.AffectedSOPClassUID = CTImageStorage
        request.AffectedSOPInstanceUID = instance
        request.Priority = 0
        request.DataSet = BytesIO(b"\0\0")
        expected = pynetdicom_command(request, C_STORE_RQ)
        assert dimse.c_store_rq(message_id, CTImageStorage, instance) == expected


def test_p_data_tf_fragments_respect_max_pdu():
    command = dimse.c_store_rq(7, CTImageStorage, "1.2.3")
    dataset = bytes(range(256)) * 100  # 25600 bytes
    pieces = dimse.p_data_tf(5, command, dataset, 4096)
    pdus = [bytes(pieces[i]) + bytes(pieces[i + 1]) for i in range(0, len(pieces), 2)]
    assert all(len(pdu) - 6 <= 4096 for pdu in pdus)
    controls = [pdu[11] for pdu in pdus]
    assert controls[0] == 0x03 and controls[-1] == 0x02 and set(controls[1:-1]) == {0x00}
    assert b"".join(pdu[12:] for pdu in pdus[1:]) == dataset
    assert all(pdu[0] == 0x04 and pdu[10] == 5 for pdu in pdus)


def test_parse_response_matches_pynetdicom_and_refuses_the_unusual():
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 42
    rsp.AffectedSOPClassUID = CTImageStorage
    rsp.AffectedSOPInstanceUID = "1.2.3.4"
    rsp.Status = 0xB000
    rsp.ErrorComment = "coerced"
    parsed = dimse.parse_response(pynetdicom_command(rsp, C_STORE_RSP))
    assert (parsed.MessageIDBeingRespondedTo, parsed.Status, parsed.ErrorComment) == (42, 0xB000, "coerced")
    assert parsed.AffectedSOPInstanceUID == "1.2.3.4"
    echo = C_ECHO()
    echo.MessageIDBeingRespondedTo = 3
    echo.AffectedSOPClassUID = Verification
    echo.Status = 0
    assert dimse.parse_response(pynetdicom_command(echo, C_ECHO_RSP)).Status == 0
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = CTImageStorage
    request.AffectedSOPInstanceUID = "1.2.3"
    request.Priority = 0
    assert dimse.parse_response(pynetdicom_command(request, C_STORE_RQ)) is None  # a request, not ours
    assert dimse.parse_response(b"\x00\x00\x00\x01garbage") is None


def test_association_uses_tuned_socket_and_reactor(storescp):
    with associate(Peer("127.0.0.1", storescp.port), [build_context(Verification)]) as channel:
        dul = channel.assoc.dul
        assert isinstance(dul, EventDrivenDUL) and isinstance(dul.socket, TunedSocket)
        raw = dul.socket.socket
        assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert raw.gettimeout() == channel.peer.timeouts.network  # reads are bounded
        for _ in range(50):
            request = C_ECHO()
            request.MessageID = channel.next_message_id()
            request.AffectedSOPClassUID = Verification
            assert channel.exchange(request, channel.accepted[0].context_id, "C-ECHO").Status == 0
    assert channel.assoc.is_released
    assert not dul.is_alive()
