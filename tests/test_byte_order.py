"""Big endian in, little endian out (and back): every value keeps its meaning (PS3.5 7.3, A.2-A.3).

pydicom decodes US, SS, UL, SL, FL, FD and AT values, so it swaps those itself, but keeps OW, OF, OL, OD and
OV values (pixel data among them) as raw bytes: a conversion that forgot them sent every 16-bit pixel with
its bytes reversed, and called it a success.  The oracles here are pydicom's own decoders: its pixel_array
of the big-endian original against that of the converted copy, and numpy reading each raw value in the byte
order of its own encoding.
"""

from __future__ import annotations

import io
import warnings

import numpy
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence

from dicomscu.files.codec import converted, encode
from dicomscu.files.probe import probe
from peers import free_port, storage_scp
from conftest import run_dicomscu

BIG = "1.2.840.10008.1.2.2"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
#: pydicom's big-endian test files: 1-, 8-, 16- and 32-bit pixels, OB and OW, single and multi-frame.
BIG_ENDIAN_FILES = ("liver_expb.dcm", "OBXXXX1A_expb.dcm", "OBXXXX1A_expb_2frame.dcm", "SC_rgb_expb.dcm",
                    "SC_rgb_expb_16bit.dcm", "SC_rgb_expb_32bit_2frame.dcm", "MR_small_bigendian.dcm",
                    "MR_small_expb.dcm", "rtdose_expb.dcm")
RAW_DTYPES = {"OW": "u2", "OF": "f4", "OL": "u4", "OD": "f8", "OV": "u8"}


def _read(raw: bytes, syntax: str) -> Dataset:
    dataset = pydicom.dcmread(io.BytesIO(raw), force=True)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = syntax
    return dataset


def _pixels(dataset: Dataset):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dataset.pixel_array


@pytest.mark.parametrize("name", BIG_ENDIAN_FILES)
@pytest.mark.parametrize("into", [EXPLICIT, IMPLICIT])
def test_big_endian_pixels_keep_their_values_in_little_endian(name, into):
    data = open(get_testdata_file(name), "rb").read()
    info = probe(data)
    assert info.transfer_syntax == BIG
    original = pydicom.dcmread(get_testdata_file(name))
    copy = _read(converted(memoryview(data)[info.dataset_offset:], BIG, into), into)
    assert numpy.array_equal(_pixels(copy), _pixels(original)), name
    back = _read(converted(encode(copy, into), into, BIG), BIG)  # and into big endian again
    assert numpy.array_equal(_pixels(back), _pixels(original)), name


def _every_binary_vr(little_endian_pixels: bool = False) -> Dataset:
    """A data set holding a value of each binary VR, at the top level and inside a sequence item."""
    item = Dataset()
    item.add_new(0x00091010, "OW", numpy.array([1, 258, 65535], ">u2").tobytes())
    item.add_new(0x00091011, "OF", numpy.array([1.5, -2.25], ">f4").tobytes())
    item.add_new(0x00091012, "OD", numpy.array([3.125], ">f8").tobytes())
    item.add_new(0x00091013, "OL", numpy.array([70000, 1], ">u4").tobytes())
    item.add_new(0x00091014, "OV", numpy.array([2 ** 40 + 3], ">u8").tobytes())
    item.add_new(0x00091015, "US", [1, 258, 65535])
    item.add_new(0x00091016, "SS", [-2, 300])
    item.add_new(0x00091017, "UL", [70000, 4])
    item.add_new(0x00091018, "SL", [-70000])
    item.add_new(0x00091019, "FL", [1.5, -0.25])
    item.add_new(0x0009101A, "FD", [2.0 ** -30])
    item.add_new(0x0009101B, "AT", [0x00181063, 0x7FE00010])
    dataset = Dataset()
    dataset.add_new(0x00090010, "LO", "DICOMSCU TEST")
    dataset.SOPClassUID, dataset.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.826.0.1.3680043.10.1137.5"
    for element in item:
        dataset.add(element)
    nested = Dataset()
    for element in item:
        nested.add(element)
    dataset.add_new(0x00091020, "SQ", Sequence([nested]))
    dataset.Rows, dataset.Columns, dataset.SamplesPerPixel = 2, 2, 1
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 0
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.PixelData = numpy.array([1, 2, 258, 65535], "<u2" if little_endian_pixels else ">u2").tobytes()
    dataset["PixelData"].VR = "OW"
    return dataset


def _meaning(dataset: Dataset, little: bool) -> list:
    """Every value as a number, raw values read in the byte order of their encoding: what must not change."""
    order = "<" if little else ">"
    values = []
    for element in dataset:
        if element.VR == "SQ":
            values.append([_meaning(item, little) for item in element.value])
        elif element.VR in RAW_DTYPES:
            values.append((element.tag, numpy.frombuffer(element.value, order + RAW_DTYPES[element.VR]).tolist()))
        else:
            values.append((element.tag, element.value))
    return values


def test_every_binary_vr_in_and_out_of_sequences():
    """(Explicit VR on both sides, so that private elements keep their VR and can be read back.)"""
    raw = encode(_every_binary_vr(), BIG)
    expected = _meaning(pydicom.filereader.read_dataset(io.BytesIO(raw), False, False), little=False)
    copy = converted(raw, BIG, EXPLICIT)
    got = pydicom.filereader.read_dataset(io.BytesIO(copy), False, True)
    assert _meaning(got, little=True) == expected
    assert converted(copy, EXPLICIT, BIG) == raw  # and back, byte for byte


def test_a_value_that_is_not_whole_words_is_refused_not_half_swapped():
    dataset = _every_binary_vr()
    dataset.add_new(0x00091030, "OF", b"\x00\x01\x02\x03\x04\x05")  # 6 bytes: not a whole number of floats
    with pytest.raises(ValueError, match="whole number"):
        converted(encode(dataset, BIG), BIG, EXPLICIT)


def test_client_fallback_and_serve_retrievals_keep_big_endian_pixels(tmp_path):
    """The client's C-STORE to a peer that takes only Implicit VR LE, and serve's C-GET (which asks for
    Implicit VR LE by default) of big-endian files it keeps as received: pixels equal to the originals'."""
    from pydicom.uid import UID

    from dicomscu.server.pacs import Pacs, ServerConfig

    names = ("MR_small_bigendian.dcm", "rtdose_expb.dcm", "OBXXXX1A_expb.dcm")
    originals = {}
    for name in names:
        dataset = pydicom.dcmread(get_testdata_file(name))
        originals[dataset.SOPInstanceUID] = dataset
    received = {}

    def on_store(event):
        received[event.request.AffectedSOPInstanceUID] = event.dataset
        return 0x0000

    classes = sorted({str(ds.SOPClassUID) for ds in originals.values()})
    with storage_scp("LEONLY", classes, on_store) as port:
        stored = run_dicomscu("--store", "127.0.0.1", str(port), "--call", "LEONLY",
                              *(get_testdata_file(name) for name in names))
    assert stored.returncode == 0, stored.stdout + stored.stderr
    for uid, original in originals.items():
        copy = received[uid]
        copy.file_meta = FileMetaDataset()
        copy.file_meta.TransferSyntaxUID = UID(IMPLICIT)
        assert numpy.array_equal(_pixels(copy), _pixels(original)), uid

    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage")))
    server.start()
    try:
        host = ("127.0.0.1", str(server.port), "--call", "DICOMSCU")
        sent = run_dicomscu("--store", *host, *(get_testdata_file(name) for name in names))
        assert sent.returncode == 0, sent.stderr
        got = [run_dicomscu("--get", "--study", "--studyroot", *host, "-k", f"StudyInstanceUID={study}",
                            "-o", str(tmp_path / "got"))
               for study in sorted({str(ds.StudyInstanceUID) for ds in originals.values()})]
    finally:
        server.stop()
    assert all(run.returncode == 0 for run in got), [run.stderr for run in got]
    copies = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, (tmp_path / "got").rglob("*.dcm"))}
    assert set(copies) == set(originals)
    for uid, original in originals.items():
        assert copies[uid].file_meta.TransferSyntaxUID == IMPLICIT  # re-encoded, not sent as stored
        assert numpy.array_equal(_pixels(copies[uid]), _pixels(original)), uid
        # every other public element keeps its value (Implicit VR: compared by value, private ones aside)
        assert _public_values(copies[uid]) == _public_values(original), uid


def _public_values(dataset: Dataset) -> dict:
    return {element.tag: element.value for element in dataset
            if not element.tag.is_private and element.tag != 0x7FE00010 and element.VR not in RAW_DTYPES
            and element.VR != "SQ"}
