"""Unit tests of the pure modules, against fixed inputs and bytes: matching, query building, the index,
flat answer decoding."""

from __future__ import annotations

import struct

import pytest
from pydicom.dataset import Dataset

from dicomscu.output.flat import read_flat
from dicomscu.query.build import build_query, charset_from_locale
from dicomscu.server.index import Index, index_row
from dicomscu.server.matching import matches, wildcard_match


# -- server/matching.py (PS3.4 C.2.2.2) ------------------------------------------------------------------

@pytest.mark.parametrize("vr, key, value, expected", [
    ("PN", "", "DOE^JOHN", True),                       # universal
    ("PN", "*", None, True),
    ("PN", "doe^john", "DOE^JOHN", True),               # PN ignores case
    ("LO", "doe", "DOE", False),                        # other text does not
    ("PN", "DO*", "DOE^JOHN", True),
    ("PN", "D?E*", "DOE^JOHN", True),
    ("PN", "D?E", "DOE^JOHN", False),
    ("CS", "CT\\MR", "MR", True),                       # multi-valued key: any of its values
    ("UI", "1.2\\1.3", "1.3", True),                    # UID list
    ("UI", "1.*", "1.3", False),                        # no wildcards on UIDs
    ("DA", "20200101-20201231", "20200615", True),      # range
    ("DA", "20200101-", "20191231", False),
    ("DA", "-20200101", "20200101", True),
    ("TM", "0900-1000", "095959.123", True),
    ("TM", "0900-1000", "100059", True),                 # "1000" is the whole minute
    ("TM", "0900-1000", "100100", False),
    ("DT", "20200101-20200101", "20200101235959", True),
    ("DA", "20200101-20201231", "", False),             # a range never matches an empty value
    ("SH", "A1", "A1 ", True),                          # trailing padding
])
def test_attribute_matching(vr, key, value, expected):
    assert matches(vr, key, value) is expected


def test_wildcard_matching_is_linear_and_exact():
    assert wildcard_match("*a*b*", "xaxxbx") and not wildcard_match("*a*b*", "xbxa")
    assert wildcard_match("a**b", "ab") and wildcard_match("?", "x") and not wildcard_match("?", "")
    assert wildcard_match("*", "") and not wildcard_match("a*", "")
    hostile = "*" + "a*" * 25 + "X"
    assert not wildcard_match(hostile, "a" * 200)  # exponential for a backtracking regex; immediate here


# -- query/build.py ---------------------------------------------------------------------------------------

def test_build_query_adds_the_upper_unique_keys_and_the_level():
    query = build_query("patientroot", "series", ["Modality=CT", "10,20=P1"], charset="")
    assert query.dataset.QueryRetrieveLevel == "SERIES"
    assert query.dataset.PatientID == "P1" and query.dataset.Modality == "CT"
    assert "StudyInstanceUID" in query.dataset and "SeriesInstanceUID" in query.dataset
    assert "SpecificCharacterSet" not in query.dataset
    gdcm = build_query("studyroot", "study", ["PatientName=A*"], charset="", level_key=False)
    assert "StudyInstanceUID" not in gdcm.dataset  # gdcmscu's identifier: not the level's own key


def test_build_query_character_set_from_the_given_environment():
    assert charset_from_locale({"LC_ALL": "C"}) == "ISO_IR 100"
    assert charset_from_locale({"LANG": "en_US.UTF-8"}) == "ISO_IR 192"
    # Latin-9: pydicom has no ISO_IR 203 codec, so Latin-1 (ISO_IR 192 when a value, the euro sign, needs it)
    assert charset_from_locale({"LC_ALL": "de_DE.ISO-8859-15"}) == "ISO_IR 100"
    euro = build_query("patientroot", "patient", ["PatientName=€uro"], environ={"LC_ALL": "de_DE.ISO-8859-15"})
    assert euro.dataset.SpecificCharacterSet == "ISO_IR 192"
    latin = build_query("patientroot", "patient", ["PatientName=Müller"], environ={"LC_ALL": "C"})
    assert latin.dataset.SpecificCharacterSet == "ISO_IR 100"
    utf8 = build_query("patientroot", "patient", ["PatientName=Μüller"], environ={"LC_ALL": "C"})
    assert utf8.dataset.SpecificCharacterSet == "ISO_IR 192"  # Greek does not fit Latin-1


# -- server/index.py ----------------------------------------------------------------------------------------

def _element(group: int, element: int, vr: str, value: bytes) -> bytes:
    value += b" " if len(value) % 2 else b""
    return struct.pack("<HH2sH", group, element, vr.encode(), len(value)) + value


FIXED = b"".join([  # Explicit VR LE, tag order
    _element(0x0008, 0x0005, "CS", b"ISO_IR 100"),
    _element(0x0008, 0x0016, "UI", b"1.2.840.10008.5.1.4.1.1.7\0"),
    _element(0x0008, 0x0018, "UI", b"1.2.3.4.5\0"),
    _element(0x0008, 0x0020, "DA", b"20240131"),
    _element(0x0008, 0x0060, "CS", b"OT"),
    _element(0x0010, 0x0010, "PN", "MÜLLER^ANNA".encode("latin-1")),
    _element(0x0010, 0x0020, "LO", b"P-7"),
    _element(0x0020, 0x000D, "UI", b"1.2.3\0"),
    _element(0x0020, 0x000E, "UI", b"1.2.3.4\0"),
])


def test_index_row_reads_fixed_bytes_with_their_character_set():
    row = index_row(FIXED, "1.2.840.10008.1.2.1")
    assert (row["sop_uid"], row["sop_class"], row["study_uid"], row["series_uid"]) == \
        ("1.2.3.4.5", "1.2.840.10008.5.1.4.1.1.7", "1.2.3", "1.2.3.4")
    assert row["patient_name"] == "MÜLLER^ANNA" and row["patient_id"] == "P-7"


def test_index_add_query_and_replace(tmp_path):
    index = Index(str(tmp_path / "index.sqlite"))
    row = index_row(FIXED, "1.2.840.10008.1.2.1")
    row["path"] = "1.2.3/1.2.3.4/1.2.3.4.5.dcm"
    index.add(row)
    assert index.contains("1.2.3.4.5") and index.count() == 1 and index.path_of("1.2.3.4.5") == row["path"]
    index.add({**row, "path": "elsewhere.dcm"})  # the same instance again: one row, the new path
    assert index.count() == 1 and index.path_of("1.2.3.4.5") == "elsewhere.dcm"
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = "müller*"
    identifier.StudyInstanceUID = ""
    identifier.ModalitiesInStudy = ""
    (match,) = index.query(identifier, "STUDY")
    assert match.identifier.StudyInstanceUID == "1.2.3" and match.identifier.ModalitiesInStudy == "OT"
    assert match.paths == ["elsewhere.dcm"]
    identifier.PatientName = "SMITH*"
    assert list(index.query(identifier, "STUDY")) == []
    index.close()


# -- output/flat.py ---------------------------------------------------------------------------------------------

def test_flat_answers_from_fixed_bytes():
    answer = read_flat(FIXED, implicit=False, little=True)
    assert answer is not None
    assert answer.cell(0x00100010) == "MÜLLER^ANNA" and answer.cell(0x00080020) == "20240131"
    assert answer.json()["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "MÜLLER^ANNA"}]}
    implicit = struct.pack("<HHL", 0x0010, 0x0020, 4) + b"P-7 "
    assert read_flat(implicit, implicit=True, little=True).cell(0x00100020) == "P-7"
    sequence = struct.pack("<HH2sHL", 0x0008, 0x1115, b"SQ", 0, 0)
    assert read_flat(sequence, implicit=False, little=True) is None  # left to pydicom
    assert read_flat(FIXED[:-3], implicit=False, little=True) is None  # cut: left to pydicom, which refuses it


def test_wado_accept_header_and_the_syntax_each_instance_is_sent_in():
    from dicomscu.server.web import accepted_syntaxes, syntax_to_send

    explicit, implicit, jpeg = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"
    assert accepted_syntaxes(None) == [explicit] == accepted_syntaxes('multipart/related; type="application/dicom"')
    assert accepted_syntaxes('multipart/related; type="application/dicom"; transfer-syntax=*') is None
    both = (f'multipart/related; type="application/dicom"; transfer-syntax={jpeg}, '
            f'multipart/related; type="application/dicom"; transfer-syntax="{implicit}"')
    assert accepted_syntaxes(both) == [jpeg, implicit]
    assert syntax_to_send(implicit, None) == implicit and syntax_to_send(jpeg, None) == jpeg
    assert syntax_to_send(implicit, [explicit]) == explicit  # re-encoded
    assert syntax_to_send(jpeg, [jpeg, implicit]) == jpeg
    assert syntax_to_send(explicit, [jpeg, implicit]) == implicit
    assert syntax_to_send(jpeg, [explicit]) == explicit  # decompressed: pylibjpeg's decoder is installed
    assert syntax_to_send(jpeg, ["1.2.840.10008.1.2.2", implicit]) == implicit  # never into big endian
    mpeg2 = "1.2.840.10008.1.2.4.100"
    assert syntax_to_send(mpeg2, [explicit, implicit]) is None  # no decoder exists: as stored or not at all
    assert syntax_to_send(explicit, [jpeg]) is None


def test_one_rule_sends_an_instance_whatever_the_path(tmp_path):
    """The client's C-STORE, serve's C-GET/C-MOVE and WADO-RS hand an instance on by one rule
    (files/sending.py): the same syntax for the same file and peer, and the same bytes in it."""
    import zlib

    from dicomscu.files import sending
    from dicomscu.files.instances import file_header
    from dicomscu.files.probe import probe
    from dicomscu.operations import store
    from dicomscu.server import pacs, web

    assert store.syntax_to_send is pacs.syntax_to_send is web.syntax_to_send is sending.syntax_to_send
    assert store.payload is pacs.payload is web.payload is sending.payload
    explicit, implicit, jpeg = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"
    assert sending.syntax_to_send(jpeg, [jpeg, implicit], decompress=True) == implicit  # --decompress
    assert sending.syntax_to_send(jpeg, None, decompress=True) == explicit
    assert sending.syntax_to_send(explicit, [explicit], decompress=True) == explicit  # nothing to decompress
    deflated = "1.2.840.10008.1.2.1.99"
    uids = (b"\x08\x00\x16\x00UI\x1a\x001.2.840.10008.5.1.4.1.1.7\0"  # (0008,0016), (0008,0018)
            b"\x08\x00\x18\x00UI\x06\x001.2.3\0")
    for size in range(2, 40, 2):  # a data set whose deflate stream has an odd length
        name = b"\x10\x00\x10\x00PN" + size.to_bytes(2, "little") + b"A" * size
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        stream = compressor.compress(uids + name) + compressor.flush()
        if len(stream) % 2:
            break
    assert len(stream) % 2
    data = file_header("1.2.840.10008.5.1.4.1.1.7", "1.2.3", deflated) + stream
    info = probe(data)
    sent = bytes(sending.payload(data, info, deflated))
    assert len(sent) % 2 == 0 and sent[: len(stream)] == stream  # PS3.5 A.5: an odd stream gets its NUL


def test_the_retrieval_keys_known_without_pydicom_agree_with_its_dictionary():
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    from dicomscu.query.keys import UNIQUE_KEYS

    assert {keyword: (tag_for_keyword(keyword), dictionary_VR(tag_for_keyword(keyword))) for keyword in UNIQUE_KEYS} \
        == UNIQUE_KEYS


def test_a_flat_identifier_encodes_as_pydicom_does():
    from pydicom.dataset import Dataset

    from dicomscu.files.codec import encode
    from dicomscu.query.identifier import Identifier, from_keys

    flat = Identifier(QueryRetrieveLevel="IMAGE", PatientID="P1", StudyInstanceUID="1.2.3",
                      SeriesInstanceUID="1.2.3.4", SOPInstanceUID="", SOPClassUID="",
                      AvailableTransferSyntaxUID="")
    dataset = Dataset()
    for keyword, value in flat.items():
        setattr(dataset, keyword, value)
    for syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
        assert flat.encode(syntax) == encode(dataset, syntax)
    # the same identifier, and the same refusals, as the query builder's
    assert from_keys("studyroot", "series", ["20,d=1.2.3", "SeriesInstanceUID=1.2.3.4"], "C-GET",
                     {"LANG": "en_US.UTF-8"}) == {"SpecificCharacterSet": "ISO_IR 192", "QueryRetrieveLevel": "SERIES",
                                                  "StudyInstanceUID": "1.2.3", "SeriesInstanceUID": "1.2.3.4"}
    assert from_keys("studyroot", "study", ["PatientName=A*"], "C-GET") is None  # not a retrieval key
    assert from_keys("studyroot", "series", ["8,52=STUDY", "20,d=1"], "C-GET") is None  # levels to reconcile
    import pytest

    from dicomscu.errors import UsageError

    with pytest.raises(UsageError, match="needs a value for SeriesInstanceUID"):
        from_keys("studyroot", "series", ["20,d=1.2.3"], "C-GET")
    with pytest.raises(UsageError, match="no wildcards"):
        from_keys("patientroot", "patient", ["PatientID=P*"], "C-MOVE")


def test_an_interrupt_waits_for_a_safe_point_inside_a_deferred_region():
    import pytest

    from dicomscu.transport import interrupts

    with pytest.raises(KeyboardInterrupt):
        interrupts.deliver(KeyboardInterrupt())  # outside a region: at once
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            interrupts.deliver(KeyboardInterrupt())  # held...
            reached.append("after delivery")
            interrupts.check()  # ...until the safe point
            reached.append("after the check")
    assert reached == ["after delivery"]
    with pytest.raises(KeyboardInterrupt):  # a region that ends without a check raises it at its end
        with interrupts.deferred():
            interrupts.deliver(KeyboardInterrupt())
    interrupts.check()  # nothing left pending


def test_an_interrupt_swallowed_on_its_way_is_raised_again_at_the_next_safe_point():
    """A Ctrl-C raised while C code runs (an extension module being imported) can be cleared by that code: it
    stays pending until the code that handles it acknowledges it, so that the next safe point raises it."""
    import pytest

    from dicomscu.transport import interrupts

    try:
        interrupts.deliver(KeyboardInterrupt())  # raised at once ...
    except KeyboardInterrupt:
        pass  # ... and swallowed, as C code that clears errors would
    with pytest.raises(KeyboardInterrupt):
        interrupts.check()  # the next safe point: not lost
    interrupts.check()  # raised once: nothing left
    try:
        interrupts.deliver(KeyboardInterrupt())
    except KeyboardInterrupt:
        interrupts.acknowledge()  # handled (a C-CANCEL sent, say): its cleanup's safe points go on
    interrupts.check()
