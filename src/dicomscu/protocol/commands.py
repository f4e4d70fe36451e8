"""DIMSE command sets (PS3.7 Annex E, 9.3): encoded and decoded with struct, no data-set library.

A command set is a handful of group-0000 elements in Implicit VR Little Endian.
:func:`encode` writes one from keywords (PS3.7 Table E.1-1 names, as pydicom
spells them), tag order and group length included; :func:`decode` reads one into
a :class:`Command`, whose attributes are those keywords.  New services (N-*) need
only their elements in :data:`ELEMENTS` and a constructor below.
"""

from __future__ import annotations

import struct

# Command Field values (PS3.7 E.1-1).
C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_GET_RQ, C_GET_RSP = 0x0010, 0x8010
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
C_CANCEL_RQ = 0x0FFF
N_EVENT_REPORT_RQ, N_EVENT_REPORT_RSP = 0x0100, 0x8100
N_ACTION_RQ, N_ACTION_RSP = 0x0130, 0x8130
COMMAND_NAMES = {C_STORE_RQ: "C-STORE-RQ", C_STORE_RSP: "C-STORE-RSP", C_GET_RQ: "C-GET-RQ", C_GET_RSP: "C-GET-RSP",
                 C_FIND_RQ: "C-FIND-RQ", C_FIND_RSP: "C-FIND-RSP", C_MOVE_RQ: "C-MOVE-RQ",
                 C_MOVE_RSP: "C-MOVE-RSP", C_ECHO_RQ: "C-ECHO-RQ", C_ECHO_RSP: "C-ECHO-RSP",
                 C_CANCEL_RQ: "C-CANCEL-RQ", N_EVENT_REPORT_RQ: "N-EVENT-REPORT-RQ",
                 N_EVENT_REPORT_RSP: "N-EVENT-REPORT-RSP", N_ACTION_RQ: "N-ACTION-RQ", N_ACTION_RSP: "N-ACTION-RSP"}
#: (0000,0800) Command Data Set Type: this value means "no data set"; any other, that one follows.
NO_DATASET = 0x0101
DATASET_PRESENT = 0x0001
#: Longest command set accepted from a peer (real ones are a few hundred bytes).
MAX_COMMAND = 64 * 1024

#: element of group 0000 -> (keyword, value representation), PS3.7 Table E.1-1.
ELEMENTS: dict[int, tuple[str, str]] = {
    0x0000: ("CommandGroupLength", "UL"),
    0x0002: ("AffectedSOPClassUID", "UI"),
    0x0003: ("RequestedSOPClassUID", "UI"),
    0x0100: ("CommandField", "US"),
    0x0110: ("MessageID", "US"),
    0x0120: ("MessageIDBeingRespondedTo", "US"),
    0x0600: ("MoveDestination", "AE"),
    0x0700: ("Priority", "US"),
    0x0800: ("CommandDataSetType", "US"),
    0x0900: ("Status", "US"),
    0x0901: ("OffendingElement", "AT"),
    0x0902: ("ErrorComment", "LO"),
    0x0903: ("ErrorID", "US"),
    0x1000: ("AffectedSOPInstanceUID", "UI"),
    0x1001: ("RequestedSOPInstanceUID", "UI"),
    0x1002: ("EventTypeID", "US"),
    0x1005: ("AttributeIdentifierList", "AT"),
    0x1008: ("ActionTypeID", "US"),
    0x1020: ("NumberOfRemainingSuboperations", "US"),
    0x1021: ("NumberOfCompletedSuboperations", "US"),
    0x1022: ("NumberOfFailedSuboperations", "US"),
    0x1023: ("NumberOfWarningSuboperations", "US"),
    0x1030: ("MoveOriginatorApplicationEntityTitle", "AE"),
    0x1031: ("MoveOriginatorMessageID", "US"),
}
TAGS = {keyword: element for element, (keyword, _) in ELEMENTS.items()}
_HEADER = struct.Struct("<HHL")


class CommandError(ValueError):
    """A command set that cannot be decoded (the association must be aborted)."""


def _value(vr: str, value) -> bytes:
    if vr == "US":
        return struct.pack("<H", value)
    if vr == "UL":
        return struct.pack("<L", value)
    if vr == "AT":
        tags = value if isinstance(value, (list, tuple)) else [value]
        return b"".join(struct.pack("<HH", tag >> 16, tag & 0xFFFF) for tag in tags)
    raw = value.encode("ascii") if isinstance(value, str) else bytes(value)
    if vr == "AE":
        raw = raw.strip()[:16]
    if len(raw) % 2:
        raw += b"\0" if vr == "UI" else b" "
    return raw


def encode(**values) -> bytes:
    """A command set from keyword=value pairs (None values are left out), with its group length."""
    body = bytearray()
    for element in sorted(TAGS[keyword] for keyword, value in values.items() if value is not None):
        keyword, vr = ELEMENTS[element]
        raw = _value(vr, values[keyword])
        body += _HEADER.pack(0x0000, element, len(raw)) + raw
    return _HEADER.pack(0x0000, 0x0000, 4) + struct.pack("<L", len(body)) + bytes(body)


class Command:
    """A decoded command set; its elements read as attributes named by keyword (None when absent)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: dict[int, bytes]) -> None:
        self._raw = raw

    def __getattr__(self, keyword: str):
        element = TAGS.get(keyword)
        if element is None:
            raise AttributeError(keyword)
        raw = self._raw.get(element)
        if raw is None:
            return None
        vr = ELEMENTS[element][1]
        try:
            if vr == "US":
                return struct.unpack("<H", raw)[0]
            if vr == "UL":
                return struct.unpack("<L", raw)[0]
            if vr == "AT":
                pairs = struct.iter_unpack("<HH", raw[: len(raw) // 4 * 4])
                return [group << 16 | element for group, element in pairs]
        except struct.error:
            raise CommandError(f"{keyword} is {len(raw)} bytes long") from None
        text = raw.rstrip(b"\0 ").decode("ascii", "replace")
        return text.lstrip() if vr == "AE" else text

    def __contains__(self, keyword: str) -> bool:
        return TAGS.get(keyword) in self._raw

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.CommandField or 0, f"command 0x{self.CommandField or 0:04X}")

    @property
    def is_response(self) -> bool:
        return bool((self.CommandField or 0) & 0x8000)

    @property
    def has_dataset(self) -> bool:
        return self.CommandDataSetType not in (None, NO_DATASET)

    def __repr__(self) -> str:
        shown = ", ".join(f"{ELEMENTS.get(e, (hex(e),))[0]}={getattr(self, ELEMENTS[e][0])!r}"
                          for e in sorted(self._raw) if e in ELEMENTS and e)
        return f"Command({shown})"


def decode(raw: bytes | bytearray | memoryview) -> Command:
    """Read a command set; elements outside Table E.1-1 are kept but not named."""
    if len(raw) > MAX_COMMAND:
        raise CommandError(f"a command set of {len(raw)} bytes (at most {MAX_COMMAND})")
    view = memoryview(raw)
    values: dict[int, bytes] = {}
    pos, end = 0, len(view)
    while pos < end:
        if end - pos < 8:
            raise CommandError("the command set ends inside an element header")
        group, element, length = _HEADER.unpack_from(view, pos)
        pos += 8
        if group != 0x0000:
            raise CommandError(f"element ({group:04X},{element:04X}) in a command set")
        if pos + length > end:
            raise CommandError(f"element (0000,{element:04X}) overruns the command set")
        values[element] = bytes(view[pos: pos + length])
        pos += length
    if 0x0100 not in values:
        raise CommandError("the command set has no Command Field")
    return Command(values)


# -- the commands we send --------------------------------------------------------------------------------

def _data(present: bool) -> int:
    return DATASET_PRESENT if present else NO_DATASET


def c_echo_rq(message_id: int, sop_class: str = "1.2.840.10008.1.1") -> bytes:
    return encode(AffectedSOPClassUID=sop_class, CommandField=C_ECHO_RQ, MessageID=message_id,
                  CommandDataSetType=NO_DATASET)


def c_echo_rsp(responding_to: int, status: int = 0x0000, sop_class: str = "1.2.840.10008.1.1") -> bytes:
    return encode(AffectedSOPClassUID=sop_class, CommandField=C_ECHO_RSP, MessageIDBeingRespondedTo=responding_to,
                  CommandDataSetType=NO_DATASET, Status=status)


def c_store_rq(message_id: int, sop_class: str, sop_instance: str, priority: int = 0x0000,
               move_originator: tuple[str, int] | None = None) -> bytes:
    """A C-STORE-RQ (PS3.7 9.3.1.1); `move_originator` (AE title, message ID) for C-MOVE sub-operations."""
    ae, originator = move_originator if move_originator is not None else (None, None)
    return encode(AffectedSOPClassUID=sop_class, CommandField=C_STORE_RQ, MessageID=message_id, Priority=priority,
                  CommandDataSetType=DATASET_PRESENT, AffectedSOPInstanceUID=sop_instance,
                  MoveOriginatorApplicationEntityTitle=ae, MoveOriginatorMessageID=originator)


def c_store_rsp(responding_to: int, sop_class: str, sop_instance: str, status: int,
                comment: str | None = None) -> bytes:
    return encode(AffectedSOPClassUID=sop_class, CommandField=C_STORE_RSP, MessageIDBeingRespondedTo=responding_to,
                  CommandDataSetType=NO_DATASET, Status=status, ErrorComment=comment,
                  AffectedSOPInstanceUID=sop_instance)


def c_find_rq(message_id: int, sop_class: str, priority: int = 0x0000) -> bytes:
    """A C-FIND-RQ (PS3.7 9.3.2.1); the identifier follows."""
    return encode(AffectedSOPClassUID=sop_class, CommandField=C_FIND_RQ, MessageID=message_id, Priority=priority,
                  CommandDataSetType=DATASET_PRESENT)


def c_get_rq(message_id: int, sop_class: str, priority: int = 0x0000) -> bytes:
    """A C-GET-RQ (PS3.7 9.3.3.1); the identifier follows."""
    return encode(AffectedSOPClassUID=sop_class, CommandField=C_GET_RQ, MessageID=message_id, Priority=priority,
                  CommandDataSetType=DATASET_PRESENT)


def c_move_rq(message_id: int, sop_class: str, move_destination: str, priority: int = 0x0000) -> bytes:
    """A C-MOVE-RQ (PS3.7 9.3.4.1); the identifier follows."""
    return encode(AffectedSOPClassUID=sop_class, CommandField=C_MOVE_RQ, MessageID=message_id,
                  MoveDestination=move_destination, Priority=priority, CommandDataSetType=DATASET_PRESENT)


def c_find_rsp(responding_to: int, sop_class: str, status: int, has_identifier: bool = False) -> bytes:
    """A C-FIND-RSP: pending ones carry an identifier, the final one none (PS3.7 9.3.2.2)."""
    return encode(AffectedSOPClassUID=sop_class, CommandField=C_FIND_RSP, MessageIDBeingRespondedTo=responding_to,
                  CommandDataSetType=_data(has_identifier), Status=status)


def retrieve_rsp(field: int, responding_to: int, sop_class: str, status: int,
                 counts: tuple[int | None, int, int, int], has_identifier: bool = False) -> bytes:
    """A C-GET-RSP or C-MOVE-RSP; `counts` = (remaining or None, completed, failed, warning) sub-operations.

    A final response with failed sub-operations carries the Failed SOP Instance UID List
    identifier (PS3.4 C.4.2.3.1), hence `has_identifier`.
    """
    remaining, completed, failed, warning = counts
    return encode(AffectedSOPClassUID=sop_class, CommandField=field, MessageIDBeingRespondedTo=responding_to,
                  CommandDataSetType=_data(has_identifier), Status=status,
                  NumberOfRemainingSuboperations=remaining, NumberOfCompletedSuboperations=completed,
                  NumberOfFailedSuboperations=failed, NumberOfWarningSuboperations=warning)


def c_cancel_rq(responding_to: int) -> bytes:
    """A C-CANCEL-RQ for the request `responding_to` (PS3.7 9.3.2.3)."""
    return encode(CommandField=C_CANCEL_RQ, MessageIDBeingRespondedTo=responding_to, CommandDataSetType=NO_DATASET)


# -- DIMSE-N: the notification and action services Storage Commitment uses (PS3.7 10.3.1, 10.3.4) -------------

def n_action_rq(message_id: int, sop_class: str, sop_instance: str, action_type: int) -> bytes:
    """An N-ACTION-RQ (PS3.7 10.3.4.1) on `sop_instance` of `sop_class`; the action information follows."""
    return encode(CommandField=N_ACTION_RQ, MessageID=message_id, RequestedSOPClassUID=sop_class,
                  RequestedSOPInstanceUID=sop_instance, ActionTypeID=action_type,
                  CommandDataSetType=DATASET_PRESENT)


def n_action_rsp(responding_to: int, sop_class: str, sop_instance: str, status: int, action_type: int | None = None,
                 comment: str | None = None) -> bytes:
    """An N-ACTION-RSP (PS3.7 10.3.4.2), without action reply (Storage Commitment has none)."""
    return encode(AffectedSOPClassUID=sop_class, CommandField=N_ACTION_RSP, MessageIDBeingRespondedTo=responding_to,
                  CommandDataSetType=NO_DATASET, Status=status, ErrorComment=comment,
                  AffectedSOPInstanceUID=sop_instance, ActionTypeID=action_type)


def n_event_report_rq(message_id: int, sop_class: str, sop_instance: str, event_type: int) -> bytes:
    """An N-EVENT-REPORT-RQ (PS3.7 10.3.1.1); the event information follows."""
    return encode(AffectedSOPClassUID=sop_class, CommandField=N_EVENT_REPORT_RQ, MessageID=message_id,
                  CommandDataSetType=DATASET_PRESENT, AffectedSOPInstanceUID=sop_instance, EventTypeID=event_type)


def n_event_report_rsp(responding_to: int, sop_class: str, sop_instance: str, status: int,
                       event_type: int | None = None, comment: str | None = None) -> bytes:
    """An N-EVENT-REPORT-RSP (PS3.7 10.3.1.2), without event reply."""
    return encode(AffectedSOPClassUID=sop_class, CommandField=N_EVENT_REPORT_RSP,
                  MessageIDBeingRespondedTo=responding_to, CommandDataSetType=NO_DATASET, Status=status,
                  ErrorComment=comment, AffectedSOPInstanceUID=sop_instance, EventTypeID=event_type)
