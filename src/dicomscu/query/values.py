"""What a query key's value may be, by VR (PS3.5 6.2, and PS3.4 C.2.2.2 for the matching forms).

A value a peer cannot take is better refused on the command line, naming the key, than sent to be refused
(or worse, matched) there, or than failing deep in the encoder as an internal error.  The rules are the
standard's value representations widened by the matching forms a query key may use: ``*`` and ``?`` on
the VRs that allow wildcards, ranges on DA, TM and DT, and several values separated by backslashes.
"""

from __future__ import annotations

import datetime
import re

from dicomscu.printable import printable

#: Longest value (characters or bytes) per VR, PS3.5 Table 6.2-1; PN: per component group, checked whole.
MAX_LENGTH = {"AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64, "PN": 64 * 3 + 2,
              "SH": 16, "TM": 14, "UI": 64}
#: Ranges of the binary integer VRs.
INTEGER_RANGE = {"US": (0, 0xFFFF), "SS": (-0x8000, 0x7FFF), "UL": (0, 0xFFFFFFFF), "SL": (-0x80000000, 0x7FFFFFFF),
                 "UV": (0, 2**64 - 1), "SV": (-(2**63), 2**63 - 1)}
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
RANGE_VRS = frozenset({"DA", "TM", "DT"})
#: VRs that the Specific Character Set does not extend (PS3.5 6.1.2.2): printable ASCII only.
DEFAULT_REPERTOIRE_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"})
_IS = re.compile(r"[+-]?\d+")
_DS = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_TM = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")
_DT = re.compile(r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?")
_AS = re.compile(r"\d{3}[DWMY]")
_FLOAT_MAX = {"FL": 3.4028234663852886e38, "FD": float("inf")}


def problem(vr: str, value: str) -> str | None:
    """Why `value` cannot be a query key's value of `vr` (one phrase), or None when it can."""
    for part in value.split("\\"):
        reason = _part_problem(vr, part)
        if reason is not None:
            return f"{part!r} {reason}" if len(value.split("\\")) > 1 else reason
    return None


def _part_problem(vr: str, part: str) -> str | None:
    if vr in INTEGER_RANGE:
        least, most = INTEGER_RANGE[vr]
        try:
            whole = int(part)
        except ValueError:
            return "is not a whole number"
        return None if least <= whole <= most else f"is out of range for {vr} ({least} to {most})"
    if vr in _FLOAT_MAX:
        try:
            number = float(part)
        except ValueError:
            return "is not a number"
        return None if abs(number) <= _FLOAT_MAX[vr] or number != number else f"is out of range for {vr}"
    text = part.strip(" ")
    if vr in DEFAULT_REPERTOIRE_VRS and any(not " " <= character <= "~" for character in text):
        return (f"holds {printable(next(c for c in text if not ' ' <= c <= '~'))!r}: {vr} takes DICOM's default "
                "repertoire only (printable ASCII), whatever the character set")
    if text == "*":
        return None  # universal match, whatever the VR (sent as given; UIDs send it empty instead)
    if vr in RANGE_VRS and "-" in text and not (vr == "DT" and _DT.fullmatch(text)):
        start, _, end = text.partition("-")
        if not start and not end:
            return "is not a range: give a start, an end or both around the '-'"
        return _part_problem(vr, start) if not end else _part_problem(vr, end) if not start else (
            _part_problem(vr, start) or _part_problem(vr, end))
    if vr in MAX_LENGTH and len(text) > MAX_LENGTH[vr]:
        return f"is longer than {vr} allows ({len(text)} characters; at most {MAX_LENGTH[vr]})"
    if vr in WILDCARD_VRS and ("*" in text or "?" in text):
        return None
    if not text:
        return None
    if vr == "IS" and not _IS.fullmatch(text):
        return "is not an integer string (IS: digits, an optional sign)"
    if vr == "DS" and not _DS.fullmatch(text):
        return "is not a decimal string (DS: a number such as 1.5 or -2e3)"
    if vr == "DA":
        return None if _valid_date(text) else "is not a date (DA: YYYYMMDD, or a range YYYYMMDD-YYYYMMDD)"
    if vr == "TM" and not (_TM.fullmatch(text) and _valid_time(text)):
        return "is not a time (TM: HH, HHMM, HHMMSS or HHMMSS.FFFFFF, or a range of them)"
    if vr == "DT" and not (_DT.fullmatch(text) and _valid_date(_date_of(text))):
        return "is not a date-time (DT: YYYYMMDDHHMMSS.FFFFFF&ZZXX, any of its leading parts)"
    if vr == "AS" and not _AS.fullmatch(text):
        return "is not an age (AS: three digits and D, W, M or Y, such as 045Y)"
    if vr == "UI":
        return None if re.fullmatch(r"\d+(\.\d+)*", text) else "is not a UID (digits and dots)"
    return None


def _date_of(datetime_text: str) -> str:
    """The date a DT value's leading digits give (a missing month or day taken as the first)."""
    digits = re.match(r"\d*", datetime_text).group()  # type: ignore[union-attr]
    return digits[:8] if len(digits) >= 8 else (digits[:6] + "01" if len(digits) >= 6 else digits[:4] + "0101")


def _valid_date(text: str) -> bool:
    if not re.fullmatch(r"\d{8}", text):
        return False
    try:
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return False
    return True


def _valid_time(text: str) -> bool:
    hours, minutes, seconds = int(text[:2]), int(text[2:4] or 0), int(text[4:6] or 0)
    return hours < 24 and minutes < 60 and seconds < 61  # 60: a leap second (PS3.5 allows it)
