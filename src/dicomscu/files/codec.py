"""A data set (identifier) to bytes in a transfer syntax and back, with pydicom; deflate included.

What goes in and out of P-DATA is a bare data set: no preamble, no file meta.
"""

from __future__ import annotations

import zlib
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import UID


def encode(dataset: Dataset, transfer_syntax: str) -> bytes:
    """`dataset` encoded in `transfer_syntax` (deflated when the syntax says so)."""
    syntax = UID(transfer_syntax)
    buffer = DicomBytesIO()
    buffer.is_little_endian = syntax.is_little_endian
    buffer.is_implicit_VR = syntax.is_implicit_VR
    write_dataset(buffer, dataset)
    raw = buffer.getvalue()
    if syntax.is_deflated:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        raw = compressor.compress(raw) + compressor.flush()
        raw += b"\0" * (len(raw) % 2)
    return raw


def decode(raw: bytes | bytearray | memoryview, transfer_syntax: str) -> Dataset:
    """The data set encoded in `raw` with `transfer_syntax`; raises on malformed bytes."""
    syntax = UID(transfer_syntax)
    data = bytes(raw)
    if syntax.is_deflated:
        data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data)
    return read_dataset(BytesIO(data), syntax.is_implicit_VR, syntax.is_little_endian)
