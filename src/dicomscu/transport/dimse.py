"""DIMSE messages sent in bulk, encoded directly (PS3.7 Annex E, PS3.8 Annex E).

pynetdicom builds every command set as a pydicom Dataset and encodes it with
pydicom's writer, twice (once to compute the group length): about a millisecond
per C-STORE-RQ, more than the rest of a small file's round trip.  A command set
is a handful of fixed elements in Implicit VR Little Endian, so for the messages
we send thousands of times we write the bytes with :mod:`struct`, and the
P-DATA-TF PDUs too, written with one ``sendmsg`` per message straight from the
file's buffer (see :meth:`dicomscu.transport.socket.TunedSocket.send_buffers`).
The commonest responses (C-STORE-RSP, C-ECHO-RSP) are decoded here too
(:func:`parse_response`); everything else is left to pynetdicom.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

C_STORE_RQ = 0x0001
C_FIND_RQ = 0x0020
C_MOVE_RQ = 0x0021
C_GET_RQ = 0x0010
C_STORE_RSP = 0x8001
C_CANCEL_RQ = 0x0FFF
NO_DATASET = 0x0101
#: (0000,0800) Command Data Set Type: 0x0101 means "no data set"; anything else means one follows.
DATASET_PRESENT = 0x0001
# PS3.8 E.2: message control header of a PDV.
_COMMAND, _LAST = 0x01, 0x02
#: P-DATA-TF header (type, reserved, PDU length) + PDV item header (length, context ID, control).
_PDU_HEADER = struct.Struct(">BBLLBB")


def _element(element: int, value: bytes) -> bytes:
    return struct.pack("<HHL", 0x0000, element, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def c_store_rq(
    message_id: int,
    sop_class: str,
    sop_instance: str,
    priority: int = 0x0000,
    move_originator: tuple[str, int] | None = None,
) -> bytes:
    """The command set of a C-STORE-RQ (PS3.7 9.3.1.1), ready to send."""
    elements = [
        (0x0002, _uid(sop_class)),
        (0x0100, _us(C_STORE_RQ)),
        (0x0110, _us(message_id)),
        (0x0700, _us(priority)),
        (0x0800, _us(DATASET_PRESENT)),
        (0x1000, _uid(sop_instance)),
    ]
    if move_originator is not None:
        ae_title, originator_id = move_originator
        elements += [(0x1030, ae_title.encode("ascii").ljust(16)[:16]), (0x1031, _us(originator_id))]
    return _command(elements)


def _command(elements: list[tuple[int, bytes]]) -> bytes:
    """A command set from (element of group 0000, encoded value) pairs, in tag order."""
    body = b"".join(_element(element, value) for element, value in elements)
    return _element(0x0000, struct.pack("<L", len(body))) + body


def _request(field: int, message_id: int, sop_class: str, extra: tuple = ()) -> bytes:
    return _command([
        (0x0002, _uid(sop_class)),
        (0x0100, _us(field)),
        (0x0110, _us(message_id)),
        *extra,
        (0x0700, _us(0x0000)),
        (0x0800, _us(DATASET_PRESENT)),
    ])


def c_find_rq(message_id: int, sop_class: str) -> bytes:
    """The command set of a C-FIND-RQ (PS3.7 9.3.2.1); the identifier follows."""
    return _request(C_FIND_RQ, message_id, sop_class)


def c_move_rq(message_id: int, sop_class: str, move_destination: str) -> bytes:
    """The command set of a C-MOVE-RQ (PS3.7 9.3.4.1); the identifier follows."""
    destination = move_destination.encode("ascii").ljust(16)[:16]
    return _request(C_MOVE_RQ, message_id, sop_class, ((0x0600, destination),))


def c_get_rq(message_id: int, sop_class: str) -> bytes:
    """The command set of a C-GET-RQ (PS3.7 9.3.3.1); the identifier follows."""
    return _request(C_GET_RQ, message_id, sop_class)


def c_store_rsp(message_id: int, sop_class: str, sop_instance: str, status: int) -> bytes:
    """The command set of a C-STORE-RSP (PS3.7 9.3.1.2), answering a sub-operation of C-GET."""
    return _command([
        (0x0002, _uid(sop_class)),
        (0x0100, _us(C_STORE_RSP)),
        (0x0120, _us(message_id)),
        (0x0800, _us(NO_DATASET)),
        (0x0900, _us(status)),
        (0x1000, _uid(sop_instance)),
    ])


def c_cancel_rq(message_id: int) -> bytes:
    """The command set of a C-CANCEL-RQ for the request `message_id` (PS3.7 9.3.2.3)."""
    return _command([(0x0100, _us(C_CANCEL_RQ)), (0x0120, _us(message_id)), (0x0800, _us(NO_DATASET))])


def p_data_tf(context_id: int, command: bytes, dataset: bytes | None, max_pdu: int) -> list:
    """`command` then `dataset` as P-DATA-TF PDUs, one PDV each, as buffers for ``sendmsg``.

    Returns alternating header bytes and memoryview slices of the inputs, so the
    data set (often most of a file) is never copied.  Each PDU's variable field
    stays within the peer's Maximum Length `max_pdu` (0: no limit); a PDV adds 6
    bytes to its fragment (item length, context ID, message control header).
    """
    pieces: list = []
    parts = [(command, True)] + ([(dataset, False)] if dataset is not None else [])
    for payload, is_command in parts:
        view = memoryview(payload).cast("B")
        size = len(view)
        step = max_pdu - 6 if max_pdu else max(size, 1)
        start = 0
        while True:
            end = min(start + step, size)
            control = (_COMMAND if is_command else 0) | (_LAST if end == size else 0)
            item_length = end - start + 2
            pieces.append(_PDU_HEADER.pack(0x04, 0, item_length + 4, item_length, context_id, control))
            pieces.append(view[start:end])
            if end == size:
                break
            start = end
    return pieces


@dataclass
class Response:
    """A DIMSE response decoded by :func:`parse_response` (the attributes we use)."""

    CommandField: int
    MessageIDBeingRespondedTo: int
    Status: int
    has_dataset: bool = False
    AffectedSOPInstanceUID: str | None = None
    ErrorComment: str | None = None
    NumberOfRemainingSuboperations: int | None = None
    NumberOfCompletedSuboperations: int | None = None
    NumberOfFailedSuboperations: int | None = None
    NumberOfWarningSuboperations: int | None = None
    #: The encoded data set (identifier) that followed the command, if any.
    dataset: bytes | None = None
    #: The data set was larger than the receiver keeps (and was dropped).
    oversize: bool = False


#: Responses that :func:`parse_response` decodes: C-STORE, C-ECHO, C-FIND, C-MOVE, C-GET.
_FAST_COMMANDS = {0x8001, 0x8030, 0x8020, 0x8021, 0x8010}
#: Command elements they may carry (PS3.7 9.3, 9.1); anything else goes to pynetdicom.
_KNOWN = {0x0000, 0x0002, 0x0100, 0x0120, 0x0800, 0x0900, 0x0901, 0x0902, 0x0903, 0x1000,
          0x1020, 0x1021, 0x1022, 0x1023}
_COUNTS = {0x1020: "NumberOfRemainingSuboperations", 0x1021: "NumberOfCompletedSuboperations",
           0x1022: "NumberOfFailedSuboperations", 0x1023: "NumberOfWarningSuboperations"}
_ELEMENT_HEADER = struct.Struct("<HHL")


def parse_response(command: bytes) -> Response | None:
    """Decode the command set of a C-STORE/ECHO/FIND/MOVE/GET response; None for anything else.

    pynetdicom decodes every response with pydicom, which costs more than the
    round trip itself for small files.  Anything unusual (another message, a data
    set, an element outside PS3.7's table for these responses, a malformed
    encoding) returns None and is left to pynetdicom.
    """
    values = _elements(command, _KNOWN)
    if values is None:
        return None
    try:
        (field,) = struct.unpack("<H", values[0x0100])
        (responding_to,) = struct.unpack("<H", values[0x0120])
        (status,) = struct.unpack("<H", values[0x0900])
        (dataset_type,) = struct.unpack("<H", values.get(0x0800, b"\x01\x01"))
    except (KeyError, struct.error):
        return None
    if field not in _FAST_COMMANDS:
        return None

    def text(element: int) -> str | None:
        raw = values.get(element)
        return raw.rstrip(b"\0 ").decode("ascii", "replace") if raw is not None else None

    response = Response(field, responding_to, status, dataset_type != 0x0101, text(0x1000), text(0x0902))
    for element, name in _COUNTS.items():
        if len(values.get(element, b"")) == 2:
            setattr(response, name, struct.unpack("<H", values[element])[0])
    return response


def parse_pdvs(body: bytes | bytearray) -> list | None:
    """The PDV items of a P-DATA-TF PDU's body as [context ID, control + fragment]; None if malformed."""
    items = []
    pos, end = 0, len(body)
    while pos < end:
        if end - pos < 6:
            return None
        (length,) = struct.unpack_from(">L", body, pos)
        if length < 2 or pos + 4 + length > end:
            return None
        items.append([body[pos + 4], bytes(body[pos + 5 : pos + 4 + length])])
        pos += 4 + length
    return items or None


@dataclass
class StoreRequest:
    """A C-STORE-RQ decoded by :func:`parse_store_request`."""

    MessageID: int
    AffectedSOPClassUID: str
    AffectedSOPInstanceUID: str
    has_dataset: bool = True
    dataset: bytes | bytearray | None = None
    #: The data set was larger than the receiver keeps (and was dropped): refuse it.
    oversize: bool = False


_STORE_RQ_KNOWN = {0x0000, 0x0002, 0x0100, 0x0110, 0x0700, 0x0800, 0x1000, 0x1030, 0x1031}


def parse_store_request(command: bytes) -> StoreRequest | None:
    """Decode a plain C-STORE-RQ command set; None for anything else (left to pynetdicom)."""
    values = _elements(command, _STORE_RQ_KNOWN)
    if values is None:
        return None
    try:
        (field,) = struct.unpack("<H", values[0x0100])
        (message_id,) = struct.unpack("<H", values[0x0110])
        (dataset_type,) = struct.unpack("<H", values[0x0800])
    except (KeyError, struct.error):
        return None
    if field != C_STORE_RQ or dataset_type == NO_DATASET:
        return None
    text = {tag: values.get(tag, b"").rstrip(b"\0 ").decode("ascii", "replace") for tag in (0x0002, 0x1000)}
    return StoreRequest(message_id, text[0x0002], text[0x1000])


def _elements(command: bytes, known: set[int]) -> dict[int, bytes] | None:
    """Group 0000 elements of an Implicit VR LE command set; None if any is unknown or cut."""
    values: dict[int, bytes] = {}
    view = memoryview(command)
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < 8:
            return None
        group, element, length = _ELEMENT_HEADER.unpack_from(view, pos)
        pos += 8
        if group != 0x0000 or element not in known or pos + length > end:
            return None
        values[element] = bytes(view[pos : pos + length])
        pos += length
    return values
