"""DIMSE messages sent in bulk, encoded directly (PS3.7 Annex E, PS3.8 Annex E).

pynetdicom builds every command set as a pydicom Dataset and encodes it with
pydicom's writer, twice (once to compute the group length): about a millisecond
per C-STORE-RQ, more than the rest of a small file's round trip.  A command set
is a handful of fixed elements in Implicit VR Little Endian, so for the messages
we send thousands of times we write the bytes with :mod:`struct` and hand the
P-DATA fragments to the upper layer ourselves.  Responses are still decoded by
pynetdicom.
"""

from __future__ import annotations

import struct
from typing import Iterator

from pynetdicom.pdu_primitives import P_DATA

C_STORE_RQ = 0x0001
#: (0000,0800) Command Data Set Type: 0x0101 means "no data set"; anything else means one follows.
DATASET_PRESENT = 0x0000
# PS3.8 E.2: message control header of a PDV.
_COMMAND, _LAST = 0x01, 0x02


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
    parts = [
        _element(0x0002, _uid(sop_class)),
        _element(0x0100, _us(C_STORE_RQ)),
        _element(0x0110, _us(message_id)),
        _element(0x0700, _us(priority)),
        _element(0x0800, _us(DATASET_PRESENT)),
        _element(0x1000, _uid(sop_instance)),
    ]
    if move_originator is not None:
        ae_title, originator_id = move_originator
        title = ae_title.encode("ascii").ljust(16)[:16]
        parts += [_element(0x1030, title), _element(0x1031, _us(originator_id))]
    body = b"".join(parts)
    return _element(0x0000, struct.pack("<L", len(body))) + body


def fragments(context_id: int, command: bytes, dataset: bytes, max_pdu: int) -> Iterator[P_DATA]:
    """P-DATA primitives carrying `command` then `dataset`, each PDU within `max_pdu`.

    A PDV item adds 6 bytes (length, context ID, control header) inside the PDU's
    variable field, whose size is what the peer's Maximum Length limits.
    """
    for payload, is_command in ((command, True), (dataset, False)):
        view = memoryview(payload)
        size = len(view)
        step = max_pdu - 6 if max_pdu else max(size, 1)
        start = 0
        while True:
            end = min(start + step, size)
            control = (_COMMAND if is_command else 0) | (_LAST if end == size else 0)
            primitive = P_DATA()
            primitive.presentation_data_value_list = [[context_id, bytes((control,)) + view[start:end]]]
            yield primitive
            if end == size:
                break
            start = end
