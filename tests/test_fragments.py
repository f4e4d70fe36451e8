"""Encapsulated pixel data with an odd-length fragment (PS3.5 A.4 requires even item lengths; such files
exist): padded with one NUL on send and on store, so that DCMTK-based peers take it, each repair said."""

from __future__ import annotations

import struct

import numpy
import pydicom
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames

from conftest import run_dicomscu
from peers import StoreSCP, free_port

from dicomscu.files.probe import odd_fragments, probe


def _odd_jpeg(path) -> pydicom.Dataset:
    """JPEG Baseline whose one fragment has an odd length (the encoder's JPEG, one byte of junk after EOI)."""
    dataset = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    (fragment,) = list(generate_frames(dataset.PixelData, number_of_frames=1))
    fragment = fragment.rstrip(b"\0")  # the JPEG, ending with its EOI marker
    if len(fragment) % 2 == 0:
        fragment += b"\0"  # one byte after EOI: decoders stop before it, and the length is odd
    assert len(fragment) % 2 == 1
    items = struct.pack("<HHL", 0xFFFE, 0xE000, 0) + struct.pack("<HHL", 0xFFFE, 0xE000, len(fragment)) + fragment
    del dataset.PixelData
    dataset.save_as(path)  # then the pixel data by hand: pydicom would not write an odd item
    with open(path, "ab") as handle:
        handle.write(struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + items
                     + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0))
    data = path.read_bytes()
    assert probe(data).odd_fragments, "the crafted file must hold an odd fragment"
    return pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))


def test_an_odd_fragment_is_padded_on_send_and_store(tmp_path):
    from dicomscu.server.pacs import Pacs, ServerConfig

    path = tmp_path / "odd.dcm"
    original = _odd_jpeg(path)
    storescp = StoreSCP(tmp_path / "received", "+xa")  # takes JPEG as it is: the fragment goes unconverted
    try:
        sent = run_dicomscu("--store", "127.0.0.1", str(storescp.port), str(path), "--timeout", "20")
    finally:
        storescp.close()
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "odd-length pixel data fragment(s) padded" in sent.stderr
    (received,) = storescp.received()
    copy = pydicom.dcmread(received)
    assert numpy.array_equal(copy.pixel_array, original.pixel_array)
    assert _elements(copy) == _elements(pydicom.dcmread(path))  # every other element as sent

    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage")))
    server.start()
    try:
        host = ("127.0.0.1", str(server.port), "--call", "DICOMSCU")
        server.store(original.SOPClassUID, original.SOPInstanceUID,
                     memoryview(path.read_bytes())[probe(path.read_bytes()).dataset_offset:],
                     str(original.file_meta.TransferSyntaxUID))  # as a C-STORE hands it over
        kept = server.resolve(server.index.path_of(original.SOPInstanceUID))
        got = run_dicomscu("--get", "--study", "--studyroot", *host, "-k",
                           f"StudyInstanceUID={original.StudyInstanceUID}", "--accept-all-syntaxes",
                           "-o", str(tmp_path / "got"))
    finally:
        server.stop()
    data = open(kept, "rb").read()
    info = probe(data)
    assert not info.odd_fragments and not odd_fragments(memoryview(data)[info.dataset_offset:], info.transfer_syntax)
    assert got.returncode == 0, got.stderr
    (fetched,) = (tmp_path / "got").rglob("*.dcm")
    assert numpy.array_equal(pydicom.dcmread(fetched).pixel_array, original.pixel_array)
    assert _elements(pydicom.dcmread(fetched)) == _elements(pydicom.dcmread(path))


def _elements(dataset) -> list:
    """(tag, VR, value) of every element but the pixel data (whose fragment was padded on purpose)."""
    return [(element.tag, element.VR, element.value) for element in dataset if element.tag != 0x7FE00010]


def test_a_spooled_instance_with_an_odd_fragment_is_padded_when_kept(tmp_path):
    """A data set past 8 MiB goes to its file as it arrives (a spool): its odd fragment is padded by a copy of
    that file, as a data set received in memory is, and the rest is kept byte for byte."""
    from dicomscu.server.pacs import Pacs, ServerConfig

    path = tmp_path / "odd.dcm"
    original = _odd_jpeg(path)
    data = path.read_bytes()
    info = probe(data)
    big = struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 4) + b"ACME"  # a private block of 9 MiB before the pixels
    big += struct.pack("<HH2sHL", 0x0009, 0x1001, b"OB", 0, 9 << 20) + bytes(9 << 20)
    pixels_at = data.index(struct.pack("<HH", 0x7FE0, 0x0010) + b"OB")
    dataset = data[info.dataset_offset:pixels_at] + big + data[pixels_at:]
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage")))
    server.start()
    try:
        spool = server.spool(original.SOPClassUID, original.SOPInstanceUID, info.transfer_syntax)
        for start in range(0, len(dataset), 1 << 16):  # as the protocol core writes a data set's fragments
            spool.write(memoryview(dataset)[start:start + (1 << 16)])
        assert server.store(original.SOPClassUID, original.SOPInstanceUID, spool, info.transfer_syntax) == 0
        kept = server.resolve(server.index.path_of(original.SOPInstanceUID))
    finally:
        server.stop()
    stored = open(kept, "rb").read()
    stored_info = probe(stored)
    stored_dataset = memoryview(stored)[stored_info.dataset_offset:]
    assert not odd_fragments(stored_dataset, stored_info.transfer_syntax)
    assert bytes(stored_dataset[:pixels_at - info.dataset_offset + len(big)]) == dataset[:pixels_at - info.dataset_offset + len(big)]
    copy = pydicom.dcmread(kept)
    assert numpy.array_equal(copy.pixel_array, original.pixel_array) and len(copy[0x00091001].value) == 9 << 20
    assert not [p for p in (tmp_path / "storage").rglob("*.part")]
