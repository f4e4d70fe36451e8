"""Attribute matching for C-FIND/C-MOVE/C-GET on the server (PS3.4 C.2.2.2), as pure functions.

* empty value: universal match;
* ``*`` and ``?``: wildcard match (text VRs; never UIDs);
* ``A\\B\\C`` on a UI: list of UID matching;
* ``A-B``, ``A-``, ``-B`` on DA/TM/DT: range matching;
* anything else: single value matching.  PN matches ignore case (most archives do,
  and PS3.4 leaves it to the implementation).
"""

from __future__ import annotations

import re
from functools import lru_cache

RANGE_VRS = frozenset({"DA", "TM", "DT"})
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})


def key_text(value) -> str:
    """A key's (or a stored attribute's) value as matching reads it: multi-values joined by backslashes."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def matches(vr: str, key: str, value: str | None) -> bool:
    """Does the stored `value` match the query `key` (both text)?"""
    key = key.strip() if vr != "PN" else key.rstrip()
    if key == "" or key == "*":
        return True
    value = (value or "").strip()
    if vr == "UI":
        return value in {part.strip() for part in key.split("\\")}
    if vr in RANGE_VRS and "-" in key:
        return _in_range(vr, key, value)
    if vr in WILDCARD_VRS and ("*" in key or "?" in key):
        return wildcard_match(key, value, ignore_case=vr == "PN")
    if vr == "PN":
        return key.casefold() == value.casefold()
    if "\\" in key:  # PS3.4 C.2.2.2.1: a multi-valued key matches any of its values
        return value in key.split("\\")
    return key == value


def wildcard_match(key: str, value: str, ignore_case: bool = False) -> bool:
    """PS3.4 C.2.2.2.4 wildcard matching in time linear in the key times the value.

    A regular expression built from ``*`` runs backtracks exponentially on keys such
    as ``*a*a*a*...b`` (one C-FIND would freeze the server).  Here the key is split
    at its ``*`` into fixed-length segments (``?`` matches any one character): the
    first must match at the start, the last at the end, and each one between at its
    leftmost place after the previous, which is correct because no segment can
    stretch.
    """
    if ignore_case:
        key, value = key.casefold(), value.casefold()
    first, *rest = key.split("*")
    if not rest:
        return _segment(first).fullmatch(value) is not None
    *middle, last = rest
    if len(first) + len(last) > len(value) or not _segment(first).match(value):
        return False
    end = len(value) - len(last)
    if last and not _segment(last).fullmatch(value, end):
        return False
    position = len(first)
    for part in middle:
        if part:
            found = _segment(part).search(value, position, end)
            if found is None:
                return False
            position = found.end()
    return True


@lru_cache(maxsize=1024)
def _segment(part: str) -> re.Pattern:
    """A wildcard-free stretch of a key (``?`` only): a fixed-length, non-backtracking pattern."""
    return re.compile("".join("." if c == "?" else re.escape(c) for c in part), re.DOTALL)


def _in_range(vr: str, key: str, value: str) -> bool:
    if not value:
        return False
    low, _, high = key.partition("-")
    low, high = low.strip(), high.strip()
    value = _comparable(vr, value)
    if low and value < _comparable(vr, low):
        return False
    if high and value > _comparable(vr, high, upper=True):
        return False
    return True


def _comparable(vr: str, text: str, upper: bool = False) -> str:
    """Fixed-width form so that text comparison orders dates and times correctly."""
    text = text.replace(":", "").replace("-", "")
    if vr == "TM":
        digits = text.split(".")[0]
        return digits.ljust(6, "9" if upper else "0")
    if vr == "DT":
        return text.ljust(14, "9" if upper else "0")
    return text
