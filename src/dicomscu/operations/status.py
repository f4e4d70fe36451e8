"""DIMSE status codes, decoded into a category and words (PS3.7 Annex C, PS3.4).

pynetdicom's tables give the exact codes; the standard also defines ranges
(A7xx, A9xx, Cxxx for storage) that servers fill with their own sub-codes, so a
code that is in no table is decoded from its range.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynetdicom import status as _tables

SUCCESS = "success"
WARNING = "warning"
FAILURE = "failure"
PENDING = "pending"
CANCEL = "cancel"

_CATEGORY = {
    _tables.STATUS_SUCCESS: SUCCESS,
    _tables.STATUS_WARNING: WARNING,
    _tables.STATUS_FAILURE: FAILURE,
    _tables.STATUS_PENDING: PENDING,
    _tables.STATUS_CANCEL: CANCEL,
}

SERVICES = {
    "echo": _tables.VERIFICATION_SERVICE_CLASS_STATUS,
    "store": _tables.STORAGE_SERVICE_CLASS_STATUS,
    "find": _tables.QR_FIND_SERVICE_CLASS_STATUS,
    "move": _tables.QR_MOVE_SERVICE_CLASS_STATUS,
    "get": _tables.QR_GET_SERVICE_CLASS_STATUS,
    "worklist": _tables.MODALITY_WORKLIST_SERVICE_CLASS_STATUS,
}

#: (mask, value, category, meaning) for the ranges PS3.4 defines.
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
    """Decode `code` as returned by `service` ('echo', 'store', 'find', ...)."""
    table = SERVICES.get(service, _tables.GENERAL_STATUS)
    if code in table:
        category, meaning = table[code]
        return Status(code, _CATEGORY.get(category, FAILURE), meaning)
    for mask, value, category, meaning in _RANGES:
        if code & mask == value:
            return Status(code, category, meaning)
    # PS3.7 C: anything else that is not success/pending/warning is a failure.
    return Status(code, FAILURE, "unknown status code")
