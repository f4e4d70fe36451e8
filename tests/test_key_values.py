"""Every -k value of every VR is either a usage error naming the key, or an identifier that encodes and dumps.

A property test (hypothesis) feeds random values, and values shaped like each VR's own, through the
query builder, the encoder and the gdcmdump-layout dump: nothing else may come out (no ValueError,
no struct.error, no answer lost in the dump).  Then the rules themselves, case by case.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.datadict import DicomDictionary

from dicomscu.errors import UsageError
from dicomscu.output.gdcmdump import dump_lines
from dicomscu.query.build import build_query
from dicomscu.query.identifier import encode_identifier
from dicomscu.query.values import problem

IMPLICIT = "1.2.840.10008.1.2"
TEXT_VRS = ["AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"]
BINARY_VRS = ["US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"]
BYTE_VRS = ["OB", "OW", "OF", "OD", "OL", "OV"]


def _tag_of(vr: str) -> int:
    """A public, current, single-valued-or-more attribute of `vr` outside the file meta and command groups."""
    for tag, (entry_vr, vm, _, retired, _) in sorted(DicomDictionary.items()):
        if entry_vr == vr and not retired and tag >> 16 > 0x0008 and vm in ("1", "1-n", "2", "3"):
            return tag
    raise AssertionError(f"no attribute of VR {vr}")


TAGS = {vr: _tag_of(vr) for vr in TEXT_VRS + BINARY_VRS + BYTE_VRS}
SHAPED = {
    "DA": st.from_regex(r"\A\d{8}(-\d{8})?\Z"), "TM": st.from_regex(r"\A\d{2,6}(\.\d{1,6})?\Z"),
    "DT": st.from_regex(r"\A\d{4,14}\Z"), "IS": st.from_regex(r"\A[+-]?\d{1,14}\Z"),
    "DS": st.from_regex(r"\A-?\d{1,10}(\.\d{1,8})?\Z"), "AS": st.from_regex(r"\A\d{3}[DWMYX]\Z"),
    "UI": st.from_regex(r"\A\d{1,30}(\.\d{1,20}){0,4}\Z"),
    **{vr: st.integers(-(2**65), 2**65).map(str) for vr in ["US", "SS", "UL", "SL", "UV", "SV"]},
    **{vr: st.floats(allow_nan=False).map(repr) for vr in ["FL", "FD"]},
}
VALUES = st.one_of(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80),
                   st.text(max_size=20).filter(lambda text: "\x00" not in text))


def _through_everything(vr: str, value: str) -> None:
    tag = TAGS[vr]
    key = f"{tag >> 16:x},{tag & 0xFFFF:x}={value}"
    try:
        query = build_query("studyroot", "study", [key], charset="ISO_IR 192")
    except UsageError as exc:
        assert f"{tag >> 16:x},{tag & 0xFFFF:x}" in str(exc) or "keys" in str(getattr(exc, "option", "")), exc
        return
    lines = dump_lines(encode_identifier(query.dataset, IMPLICIT))
    assert any(line.startswith(f"({tag >> 16:04x},{tag & 0xFFFF:04x})") for line in lines), lines


@settings(max_examples=600, deadline=None)
@given(vr=st.sampled_from(TEXT_VRS + BINARY_VRS + BYTE_VRS), data=st.data())
def test_every_value_of_every_vr_is_a_usage_error_or_encodes_and_dumps(vr, data):
    strategy = st.one_of(SHAPED[vr], VALUES) if vr in SHAPED else VALUES
    values = data.draw(st.lists(strategy, min_size=1, max_size=3))
    _through_everything(vr, "\\".join(values))


@pytest.mark.parametrize("vr, value, reason", [
    ("IS", "abc", "integer string"), ("IS", "1.5", "integer string"), ("DS", "a", "decimal string"),
    ("DA", "20201345", "not a date"), ("DA", "2020-01-01", "not a date"), ("TM", "2500", "not a time"),
    ("TM", "1260", "not a time"), ("AS", "45", "not an age"), ("US", "70000", "out of range"),
    ("SS", "-40000", "out of range"), ("UL", "-1", "out of range"), ("FL", "1e39", "out of range"),
    ("US", "x", "whole number"), ("LO", "x" * 65, "longer than LO"), ("SH", "x" * 17, "longer than SH"),
    ("CS", "A" * 17, "longer than CS"), ("UI", "1.2.x", "not a UID"), ("DA", "-", "not a range"),
])
def test_values_a_peer_cannot_take_are_named(vr, value, reason):
    assert reason in (problem(vr, value) or "")
    with pytest.raises(UsageError, match="the value"):
        build_query(
            "studyroot", "study", [f"{TAGS[vr] >> 16:x},{TAGS[vr] & 0xFFFF:x}={value}"])


@pytest.mark.parametrize("vr, value", [
    ("DA", "20200101-20201231"), ("DA", "-20201231"), ("DA", "20200101-"), ("DA", "*"), ("TM", "0830-1700"),
    ("TM", "235959.999999"), ("DT", "20200101120000.5+0100"), ("DT", "2020-2021"), ("IS", "-12"),
    ("DS", "1.5e3"), ("DS", " 2.5 "), ("CS", "C?"), ("LO", "A*B?"), ("PN", "Doe^J*=Ω^Ω"), ("AS", "045Y"),
    ("US", "65535"), ("SL", "-2147483648\\5"), ("FD", "1e300"), ("UI", "1.2.840.10008"), ("LO", ""),
])
def test_values_of_the_matching_forms_are_taken(vr, value):
    assert problem(vr, value) is None


@pytest.mark.parametrize("vr, values", [("UL", (1, 4294967295, 7)), ("SL", (-5, 2_000_000_000)), ("US", (1, 2, 3)),
                                        ("FD", (1.5, -2.25)), ("FL", (0.5, 8.0))])
def test_the_dump_of_multi_valued_binary_numbers_lists_each(vr, values):
    """(A UL or SL with two values once crashed the dump, and lost every answer after it.)"""
    code = {"UL": "L", "SL": "l", "US": "H", "FD": "d", "FL": "f"}[vr]
    tag = TAGS[vr]
    body = struct.pack(f"<{len(values)}{code}", *values)
    element = struct.pack("<HHL", tag >> 16, tag & 0xFFFF, len(body)) + body
    (line,) = dump_lines(element)
    assert "\\".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values) in line
