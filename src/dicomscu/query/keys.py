"""``-k/--key`` strings, parsed into tag paths and values (pure functions).

Accepted forms (gdcmscu's, DCMTK's and pynetdicom's):

* ``10,10=A*`` and ``10,10,A*`` (gdcmscu's own) — group,element in hex, any digits;
* ``10,20`` and ``10,20=`` — a return key (empty value: universal match);
* ``PatientName=A*`` — a data dictionary keyword;
* ``ScheduledProcedureStepSequence[0].Modality=CT`` or ``0040,0100[0].0008,0060=CT``
  — a path into a sequence item; ``ScheduledProcedureStepSequence`` alone asks for
  the whole sequence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dicomscu.errors import UsageError

#: The retrieval keys, known here so that a retrieval naming only them (WADO-RS by UIDs) needs no data
#: dictionary: pydicom's is loaded for any other key.  A test checks them against it.
UNIQUE_KEYS = {
    "PatientID": (0x00100020, "LO"),
    "StudyInstanceUID": (0x0020000D, "UI"),
    "SeriesInstanceUID": (0x0020000E, "UI"),
    "SOPInstanceUID": (0x00080018, "UI"),
    "QueryRetrieveLevel": (0x00080052, "CS"),
}
UNIQUE_BY_TAG = {tag: (keyword, vr) for keyword, (tag, vr) in UNIQUE_KEYS.items()}


def tag_for_keyword(keyword: str) -> int | None:
    if keyword in UNIQUE_KEYS:
        return UNIQUE_KEYS[keyword][0]
    from pydicom.datadict import tag_for_keyword as lookup

    return lookup(keyword)


def keyword_for_tag(tag: int) -> str:
    if tag in UNIQUE_BY_TAG:
        return UNIQUE_BY_TAG[tag][0]
    from pydicom.datadict import keyword_for_tag as lookup

    return lookup(tag)


def dictionary_VR(tag: int) -> str:
    """The tag's VR in the data dictionary; KeyError when it is not there."""
    if tag in UNIQUE_BY_TAG:
        return UNIQUE_BY_TAG[tag][1]
    from pydicom.datadict import dictionary_VR as lookup

    return lookup(tag)

# gdcmscu reads tags with sscanf("%x,%x"), which takes an optional 0x before each number
_GDCM_FORM = re.compile(r"^\s*(?:0[xX])?([0-9A-Fa-f]{1,4})\s*,\s*(?:0[xX])?([0-9A-Fa-f]{1,4})\s*,(.*)$", re.S)
# (sscanf's %x skips the spaces before a number: "10, 10" is a tag to gdcmscu, "10 ,10" is not)
_SEGMENT = re.compile(r"^(?:\(?(?:0[xX])?([0-9A-Fa-f]{1,4}),\s*(?:0[xX])?([0-9A-Fa-f]{1,4})\)?|([A-Za-z][A-Za-z0-9]*))"
                      r"(?:\[(\d+)\])?$")
_SEGMENT_SPLIT = re.compile(r"\.(?![^()]*\))")


@dataclass(frozen=True)
class Step:
    """One element of a key path; `item` is the sequence item index for SQ steps."""

    tag: int
    vr: str
    item: int | None = None

    @property
    def name(self) -> str:
        return keyword_for_tag(self.tag) or f"({self.tag >> 16:04X},{self.tag & 0xFFFF:04X})"


@dataclass(frozen=True)
class Key:
    """A parsed ``--key``: where it goes and its value (None: a return key)."""

    text: str
    path: tuple[Step, ...]
    value: str | None

    @property
    def tag(self) -> int:
        return self.path[-1].tag

    @property
    def vr(self) -> str:
        return self.path[-1].vr


def parse_key(text: str) -> Key:
    """Parse one ``--key`` string; a :class:`UsageError` names the key and the problem."""
    match = _GDCM_FORM.match(text)
    if match:
        path_text, value = f"{match.group(1)},{match.group(2)}", match.group(3)
    elif "=" in text:
        path_text, value = text.split("=", 1)
    else:
        path_text, value = text, None
    path_text = path_text.strip()
    if not path_text:
        raise UsageError(f"'{text}': no attribute before '='", option="keys")
    steps = tuple(_step(segment, text) for segment in _SEGMENT_SPLIT.split(path_text))
    for step in steps[:-1]:
        if step.vr != "SQ":
            raise UsageError(f"'{text}': {step.name} is not a sequence, it cannot have items", option="keys")
    last = steps[-1]
    if last.item is not None:
        raise UsageError(f"'{text}': an item index needs an attribute after it ([{last.item}].Keyword)", option="keys")
    if value is not None:
        value = _unquote(value)
        if last.vr == "SQ" and value:
            raise UsageError(f"--key '{text}': {last.name} is a sequence; give values to its items "
                             f"({last.name}[0].Keyword=VALUE)")
    return Key(text, steps, value)


def _step(segment: str, text: str) -> Step:
    match = _SEGMENT.match(segment.strip())
    if not match:
        raise UsageError(f"'{text}': '{segment}' is neither GGGG,EEEE nor a DICOM keyword", option="keys")
    group, element, keyword, item = match.groups()
    if keyword:
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise UsageError(f"'{text}': unknown keyword '{keyword}'{_did_you_mean(keyword)}", option="keys")
    else:
        tag = int(group, 16) << 16 | int(element, 16)
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        # a private tag, as gdcmscu takes it: text (its VR is not written in Implicit VR); a public tag newer
        # than the data dictionary: its bytes as typed (UN), for a peer that knows it
        vr = "LO" if (tag >> 16) & 1 else "UN"
    if tag >> 16 in (0x0000, 0x0002) or tag >> 16 == 0xFFFE:
        raise UsageError(f"'{text}': command, file meta and item tags cannot be query keys", option="keys")
    return Step(tag, vr.split(" or ")[0], int(item) if item is not None else None)


def _unquote(value: str) -> str:
    """Drop one level of quotes left by Windows shells or scripts: "A*" -> A*."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _did_you_mean(keyword: str) -> str:
    """' (did you mean PatientName?)' for a misspelled keyword, from pydicom's dictionary; '' if none is close."""
    import difflib

    from pydicom.datadict import keyword_dict

    close = difflib.get_close_matches(keyword, keyword_dict.keys(), n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""
