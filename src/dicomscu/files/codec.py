"""A data set (identifier) to bytes in a transfer syntax and back, with pydicom; deflate included.

What goes in and out of P-DATA is a bare data set: no preamble, no file meta.  A
compressed data set can be decompressed into an uncompressed syntax when one of
pydicom's pixel data decoders for its syntax is installed (``dicomscu[compressed]``).
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=64)
def decodable(transfer_syntax: str) -> bool:
    """Whether pixel data compressed in `transfer_syntax` can be decoded here (a decoder plugin is installed)."""
    from pydicom.pixels import get_decoder

    try:
        return bool(get_decoder(UID(transfer_syntax)).is_available)
    except (NotImplementedError, ValueError):  # no decoder exists for that syntax
        return False


def decompressed(raw: bytes | bytearray | memoryview, transfer_syntax: str, into: str) -> bytes:
    """The compressed data set `raw` with its pixel data decoded, encoded in the uncompressed `into`: the same
    instance (same UIDs), its Photometric Interpretation updated as decoding changes it (YBR to RGB).
    Raises when the pixel data cannot be decoded."""
    from pydicom.dataset import FileMetaDataset

    dataset = decode(raw, transfer_syntax)
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = UID(transfer_syntax)
    dataset.decompress(generate_instance_uid=False)
    return encode(dataset, into)
