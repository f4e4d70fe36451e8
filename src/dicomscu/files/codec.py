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


def converted(raw: bytes | bytearray | memoryview, stored: str, into: str) -> bytes:
    """The data set `raw`, encoded in `stored`, in the uncompressed syntax `into`: the one rule every path that
    hands an instance on in another syntax uses (the client's C-STORE fallback; serve's C-GET, C-MOVE and
    WADO-RS).

    The same instance (same UIDs): a compressed data set is decompressed first (its Photometric
    Interpretation updated as decoding changes it, YBR to RGB; raises when the pixel data cannot be decoded),
    and when the byte order changes (Explicit VR Big Endian on either side) the binary values pydicom keeps
    as raw bytes are swapped too (PS3.5 7.3): OW, OF, OL, OD and OV, and OW pixel data by its Bits Allocated.
    pydicom swaps the values it decodes (US, SS, UL, SL, FL, FD, AT) but not those, so without this a 16-bit
    image would reach the peer with every pixel's bytes reversed, and the transfer would look like a success.
    """
    source, target = UID(stored), UID(into)
    dataset = decode(raw, stored)
    little = source.is_little_endian
    if source.is_compressed and not source.is_deflated:
        from pydicom.dataset import FileMetaDataset

        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = source
        dataset.decompress(generate_instance_uid=False)
        little = True  # pydicom's decoders give native little-endian pixels
    if little != target.is_little_endian:
        swap_binary_values(dataset, target.is_little_endian)
    return encode(dataset, into)


#: Bytes per value of the binary VRs whose values pydicom keeps as raw bytes, in the data set's byte order.
_WORD_BYTES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_ARRAY_CODES = {2: "H", 4: "I", 8: "Q"}
_PIXEL_DATA = 0x7FE00010


def swap_binary_values(dataset: Dataset, into_little: bool, bits_allocated: int | None = None) -> None:
    """Reverse the byte order of every OW/OF/OL/OD/OV value of `dataset` and of its sequences' items, in place,
    for a conversion into little (`into_little`) or big endian.

    OW Pixel Data is made of pixels of Bits Allocated bits (16, 32 or 64 bits: one unit each), as pydicom's
    own big-endian pixel decoder reads it; pixels of 1 or 8 bits in OW are 16-bit words in big endian (PS3.5
    A.3), so they are swapped into little endian, and into big endian they go as OB, in their byte order
    (what every reader takes the same way).  A value whose length is not a whole number of units is refused
    (ValueError) rather than half swapped.
    """
    import array

    bits = dataset.get("BitsAllocated", bits_allocated)
    for element in dataset:
        if element.VR == "SQ":
            for item in element.value or []:
                swap_binary_values(item, into_little, bits)
            continue
        if element.tag == _PIXEL_DATA and element.VR == "OW" and bits in (1, 8) and not into_little:
            element.VR = "OB"
            continue
        width = _WORD_BYTES.get(element.VR)
        value = element.value
        if width is None or not value or not isinstance(value, (bytes, bytearray)):
            continue
        if element.tag == _PIXEL_DATA and element.VR == "OW" and bits in (32, 64):
            width = bits // 8
        if len(value) % width:
            raise ValueError(f"{element.tag} ({element.VR}) has {len(value)} bytes, not a whole number of "
                             f"{width}-byte values: its byte order cannot be changed")
        words = array.array(_ARRAY_CODES[width])
        if words.itemsize != width:  # pragma: no cover - every platform CPython supports has these sizes
            raise ValueError(f"no {width}-byte array type on this platform")
        words.frombytes(value)
        words.byteswap()
        element.value = words.tobytes()
