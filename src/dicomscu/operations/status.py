"""DIMSE status codes, decoded into a category and words (PS3.7 Annex C, PS3.4 B.2.3, C.4, K.4).

Exact codes come from the tables below; the standard also defines ranges (A7xx,
A9xx, Cxxx) that servers fill with their own sub-codes, so a code in no table is
decoded from its range.  tests/test_status.py checks every category against
pynetdicom's tables.
"""

from __future__ import annotations

from dataclasses import dataclass

SUCCESS = "success"
WARNING = "warning"
FAILURE = "failure"
PENDING = "pending"
CANCEL = "cancel"

#: PS3.7 C.1 to C.5: statuses any service may return.
GENERAL = {
    0x0000: (SUCCESS, ""),
    0x0105: (FAILURE, "No Such Attribute"),
    0x0106: (FAILURE, "Invalid Attribute Value"),
    0x0107: (WARNING, "Attribute List Error"),
    0x0110: (FAILURE, "Processing Failure"),
    0x0111: (FAILURE, "Duplicate SOP Instance"),
    0x0112: (FAILURE, "No Such SOP Instance"),
    0x0113: (FAILURE, "No Such Event Type"),
    0x0114: (FAILURE, "No Such Argument"),
    0x0115: (FAILURE, "Invalid Argument Value"),
    0x0116: (WARNING, "Attribute Value Out of Range"),
    0x0117: (FAILURE, "Invalid Object Instance"),
    0x0118: (FAILURE, "No Such SOP Class"),
    0x0119: (FAILURE, "Class-Instance Conflict"),
    0x0120: (FAILURE, "Missing Attribute"),
    0x0121: (FAILURE, "Missing Attribute Value"),
    0x0122: (FAILURE, "Refused: SOP Class Not Supported"),
    0x0123: (FAILURE, "No Such Action"),
    0x0124: (FAILURE, "Refused: Not Authorized"),
    0x0210: (FAILURE, "Duplicate Invocation"),
    0x0211: (FAILURE, "Unrecognized Operation"),
    0x0212: (FAILURE, "Mistyped Argument"),
    0x0213: (FAILURE, "Resource Limitation"),
    0xFE00: (CANCEL, ""),
}
_RETRIEVE = {
    0xA701: (FAILURE, "Refused: Out of Resources, unable to calculate the number of matches"),
    0xA702: (FAILURE, "Refused: Out of Resources, unable to perform sub-operations"),
    0xA900: (FAILURE, "Identifier does not match SOP Class"),
    0xAA00: (FAILURE, "None of the frames requested were found in the SOP Instance"),
    0xAA01: (FAILURE, "Unable to create new object for this SOP Class"),
    0xAA02: (FAILURE, "Unable to extract frames"),
    0xAA03: (FAILURE, "Time-based request received for a non-time-based original SOP Instance"),
    0xAA04: (FAILURE, "Invalid request"),
    0xFF00: (PENDING, "Sub-operations are continuing"),
    0xB000: (WARNING, "Sub-operations complete, one or more failures or warnings"),
    0xC000: (FAILURE, "Unable to Process"),
}
_FIND = {
    0xA700: (FAILURE, "Refused: Out of Resources"),
    0xA900: (FAILURE, "Identifier Does Not Match SOP Class"),
    0xB001: (WARNING, "Matching reached the response limit; a narrower request may return more"),
    0xFF00: (PENDING, "Matches are continuing, current match supplied"),
    0xFF01: (PENDING, "Matches are continuing, warning: optional keys not supported"),
    0xC000: (FAILURE, "Unable to Process"),
}
SERVICES = {
    "echo": GENERAL,
    "store": {**GENERAL, 0xB000: (WARNING, "Coercion of Data Elements"), 0xB006: (WARNING, "Element Discarded"),
              0xB007: (WARNING, "Data Set does not match SOP Class"), 0xA700: (FAILURE, "Refused: Out of Resources"),
              0xA900: (FAILURE, "Data Set does not match SOP Class"), 0xC000: (FAILURE, "Cannot understand")},
    "find": {**GENERAL, **_FIND},
    "worklist": {**GENERAL, **_FIND},
    "move": {**GENERAL, **_RETRIEVE, 0xA801: (FAILURE, "Move destination unknown")},
    "get": {**GENERAL, **_RETRIEVE},
    "commit": GENERAL,  # N-ACTION and N-EVENT-REPORT of Storage Commitment (PS3.4 J.3.2.1.2, J.3.3.1.2)
}

#: (mask, value, category, meaning) for the ranges PS3.4 defines; queries and retrievals name Cxxx
#: "Unable to Process" (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4).
_QUERY_RANGES = [(0xF000, 0xC000, FAILURE, "Unable to Process")]
_RANGES = [
    (0xFF00, 0xA700, FAILURE, "Refused: Out of Resources"),
    (0xFF00, 0xA900, FAILURE, "Error: Data Set does not match SOP Class"),
    (0xF000, 0xC000, FAILURE, "Error: Cannot understand"),
    (0xF000, 0xB000, WARNING, "Warning"),
]


@dataclass(frozen=True)
class Status:
    """A decoded DIMSE status."""

    code: int
    category: str
    meaning: str

    @property
    def ok(self) -> bool:
        return self.category == SUCCESS

    @property
    def failed(self) -> bool:
        return self.category in (FAILURE, CANCEL)

    def __str__(self) -> str:
        text = f"0x{self.code:04X} {self.category}"
        return f"{text}: {self.meaning}" if self.meaning else text


def decode(code: int, service: str) -> Status:
    """Decode `code` as returned by `service` ('echo', 'store', 'find', 'worklist', 'move', 'get')."""
    table = SERVICES.get(service, GENERAL)
    if code in table:
        category, meaning = table[code]
        return Status(code, category, meaning)
    ranges = _QUERY_RANGES + _RANGES if service in ("find", "worklist", "move", "get") else _RANGES
    for mask, value, category, meaning in ranges:
        if code & mask == value:
            return Status(code, category, meaning)
    # PS3.7 C: anything else that is not success/pending/warning is a failure.
    return Status(code, FAILURE, "unknown status code")
