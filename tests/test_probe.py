"""The file probe: every cut of a file is caught, every whole file passes."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import data_element_generator
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from dicomscu.files.probe import BadFile, probe


@pytest.fixture(scope="module")
def small_file(dataset_dir) -> bytes:
    return (dataset_dir / "small" / "small_00000.dcm").read_bytes()


@pytest.fixture(scope="module")
def big_file(dataset_dir) -> bytes:
    return (dataset_dir / "big" / "big_00000.dcm").read_bytes()


def test_whole_files(small_file, big_file):
    small = probe(small_file)
    assert small.transfer_syntax == ImplicitVRLittleEndian and small.has_meta
    ds = dcmread(BytesIO(small_file))
    assert (small.sop_class, small.sop_instance) == (ds.SOPClassUID, ds.SOPInstanceUID)
    big = probe(big_file)
    assert big.transfer_syntax == "1.2.840.10008.1.2.1"
    assert small_file[small.dataset_offset:small.dataset_offset + 2] == b"\x08\x00"


def test_every_cut_inside_an_element_is_detected(small_file):
    """A cut between two elements leaves a valid, shorter data set; any other cut is caught."""
    offset = probe(small_file).dataset_offset
    stream = BytesIO(small_file)
    stream.seek(offset)
    elements = data_element_generator(stream, is_implicit_VR=True, is_little_endian=True)
    boundaries = {raw.value_tell + raw.length for raw in elements}
    cuts = [cut for cut in range(offset + 1, len(small_file)) if cut not in boundaries]
    assert len(cuts) > 2000
    for cut in cuts:
        with pytest.raises(BadFile, match="truncated"):
            probe(small_file[:cut])


def test_cut_in_meta_or_preamble(small_file):
    for cut in (1, 50, 131, 140, 200):
        with pytest.raises(BadFile):
            probe(small_file[:cut])


def test_empty_and_text():
    with pytest.raises(BadFile, match="empty"):
        probe(b"")
    with pytest.raises(BadFile, match="not a DICOM file"):
        probe(b"hello world, this is not DICOM\n" * 10)


def _raw(ds: Dataset, implicit=True) -> bytes:
    """`ds` encoded as a bare data set, without preamble or file meta."""
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, implicit
    write_dataset(out, ds)
    return out.getvalue()


def test_raw_dataset_without_meta(small_file):
    ds = dcmread(BytesIO(small_file))
    del ds.file_meta
    raw = _raw(ds)
    info = probe(raw)
    assert not info.has_meta and info.sop_instance == ds.SOPInstanceUID and info.dataset_offset == 0
    with pytest.raises(BadFile, match="truncated"):
        probe(raw[:-10])


def test_missing_sop_instance(small_file):
    ds = dcmread(BytesIO(small_file))
    del ds.file_meta
    del ds.SOPInstanceUID
    with pytest.raises(BadFile, match="no SOP Instance UID"):
        probe(_raw(ds))


def test_undefined_length_sequences_walked(small_file, tmp_path):
    ds = dcmread(BytesIO(small_file))
    item = Dataset()
    item.CodeValue = "123"
    inner = Dataset()
    inner.CodeMeaning = "nested"
    item.ConceptNameCodeSequence = Sequence([inner])
    ds.ReferencedStudySequence = Sequence([item, Dataset()])
    ds["ReferencedStudySequence"].is_undefined_length = True
    for entry in ds.ReferencedStudySequence:
        entry.is_undefined_length_sequence_item = True
    path = tmp_path / "seq.dcm"
    ds.save_as(path)
    whole = path.read_bytes()
    assert probe(whole).sop_instance == ds.SOPInstanceUID
    start = whole.index(b"\x08\x00\x10\x11\xff\xff\xff\xff")  # (0008,1110), Implicit VR, undefined length
    end = whole.index(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00", start) + 8
    for cut in range(start + 1, end):
        with pytest.raises(BadFile):
            probe(whole[:cut])


def test_big_endian(small_file, tmp_path):
    ds = dcmread(BytesIO(small_file))
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    path = tmp_path / "be.dcm"
    dcmwrite(path, ds, implicit_vr=False, little_endian=False, force_encoding=True)
    info = probe(path.read_bytes())
    assert info.transfer_syntax == ExplicitVRBigEndian and info.sop_instance == ds.SOPInstanceUID


def test_invalid_uid_rejected(small_file):
    ds = dcmread(BytesIO(small_file))
    del ds.file_meta
    ds.SOPInstanceUID = "1.2.abc"
    with pytest.raises(BadFile, match="invalid SOP Instance UID"):
        probe(_raw(ds))


def test_head_only_probe_for_planning(big_file):
    info = probe(big_file[:4096], complete=False)
    assert info.sop_class == "1.2.840.10008.5.1.4.1.1.2"


def test_data_set_uids_win_over_the_meta_and_must_be_there(small_file):
    ds = dcmread(BytesIO(small_file))
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    info = probe(buffer.getvalue())
    assert info.sop_instance == ds.SOPInstanceUID and "1.2.3.4" in info.warning
    del ds.SOPInstanceUID
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=False)
    with pytest.raises(BadFile, match=r"no SOP Instance UID \(0008,0018\)"):
        probe(buffer.getvalue())
    assert probe(buffer.getvalue()[:600], complete=False).sop_instance == "1.2.3.4"  # a plan reads the head


def test_deflated_data_sets_are_walked_whole(small_file):
    import zlib

    ds = dcmread(BytesIO(small_file))
    whole = probe(small_file)
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = small_file[whole.dataset_offset:]
    if whole.transfer_syntax == "1.2.840.10008.1.2":  # deflate wraps Explicit VR LE: re-encode first
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        body = buffer.getvalue()[probe(buffer.getvalue()).dataset_offset:]
    deflated = packer.compress(body) + packer.flush()
    meta = BytesIO()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    ds.save_as(meta, enforce_file_format=True)
    head = meta.getvalue()[:probe(meta.getvalue(), complete=False).dataset_offset]
    info = probe(head + deflated)
    assert info.sop_instance == ds.SOPInstanceUID
    with pytest.raises(BadFile, match="deflate"):
        probe(head + deflated[: len(deflated) // 2])
