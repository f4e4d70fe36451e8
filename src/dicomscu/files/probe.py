"""Read what C-STORE needs from a DICOM file's bytes, and prove the file is whole.

pydicom decodes every value and, on a file cut in the middle of an element,
silently returns what it managed to read.  To send a file we need neither: only
the SOP Class/Instance UIDs, the transfer syntax and where the data set starts,
plus the certainty that the data set is complete (DCMTK refuses a truncated file
with "premature end of stream"; so do we).  So this module parses the file meta
(group 0002, always Explicit VR Little Endian) and then walks the data set's
element headers, skipping values, following undefined-length sequences and
encapsulated pixel data item by item.  Walking never decodes a value and never
copies one, so it costs microseconds per file; the bytes found valid are then
sent as they are, without re-encoding.

All functions here are pure: bytes in, :class:`DicomFile` or :class:`BadFile` out.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from dicomscu.uids import (
    DEFLATED_EXPLICIT_VR_LE as DeflatedExplicitVRLittleEndian,
    EXPLICIT_VR_BE as ExplicitVRBigEndian,
    EXPLICIT_VR_LE as ExplicitVRLittleEndian,
    IMPLICIT_VR_LE as ImplicitVRLittleEndian,
)

#: VRs whose explicit encoding has 2 reserved bytes and a 32-bit length (PS3.5 7.1.2).
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
_ALL_VRS = _LONG_VRS | frozenset(
    b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split()
)
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_SOP_CLASS = 0x00080016
_PIXEL_DATA = 0x7FE00010
_SOP_INSTANCE = 0x00080018
_MAX_DEPTH = 64
#: A deflated data set that inflates past this is refused (a "zip bomb" would exhaust memory).
MAX_INFLATED = 1 << 30

#: Meta elements we read (tag -> field of DicomFile).
_META_UIDS = {0x00020002: "sop_class", 0x00020003: "sop_instance", 0x00020010: "transfer_syntax"}

#: Media Storage Directory Storage: a CD/DVD's index, not an instance.
DICOMDIR = "1.2.840.10008.1.3.10"

UNCOMPRESSED = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)


class BadFile(ValueError):
    """The bytes are not a DICOM file we can send; the message says why."""


@dataclass(frozen=True)
class DicomFile:
    """What C-STORE needs to know about one file."""

    sop_class: str
    sop_instance: str
    transfer_syntax: str
    #: Offset of the data set in the file (after the preamble and file meta).
    dataset_offset: int
    #: False for a "raw" data set without preamble and file meta.
    has_meta: bool
    #: Set when the file meta's SOP UIDs disagree with the data set's (which win).
    warning: str = ""
    #: Text values of the top-level tags `probe` was asked to ``read`` ("" when absent).
    values: Mapping[int, str] = field(default_factory=dict, compare=False)
    #: Offsets (in the file) of encapsulated pixel data fragments of odd length, which PS3.5 A.4 forbids and
    #: DCMTK-based peers abort on: :func:`even_fragments` pads them.
    odd_fragments: tuple[int, ...] = field(default=(), compare=False)
    #: Tags of elements of odd length (a PS3.5 7.1.1 violation that DCMTK-based peers abort on), the first few.
    odd_elements: tuple[int, ...] = field(default=(), compare=False)


def _uid(raw: bytes | memoryview) -> str:
    return bytes(raw).rstrip(b"\0 ").decode("ascii", "replace")


#: Precompiled headers per byte order: explicit (group, element, VR, 16-bit length), implicit or item
#: (group, element, 32-bit length), and a 32-bit length.  One unpack per element in the common case.
_STRUCTS = {little: (struct.Struct(order + "HH2sH"), struct.Struct(order + "HHL"), struct.Struct(order + "L"))
            for little, order in ((True, "<"), (False, ">"))}


def element_header(
    data: memoryview, pos: int, end: int, implicit: bool, little: bool
) -> tuple[int, int, int, bool]:
    """(tag, value length, header size, holds Implicit VR (UN)) of the element at `pos`.

    Raises
    :class:`BadFile` when the header itself is cut or its VR is not a VR.  (Hot: a
    store proves every file whole with it, so the structs are compiled once and
    an explicit header is read in one unpack.)
    """
    if end - pos < 8:
        raise BadFile(f"truncated: the file ends inside an element header at offset {pos}")
    explicit, implicit_header, long_length = _STRUCTS[little]
    if implicit:
        group, element, length = implicit_header.unpack_from(data, pos)
        return group << 16 | element, length, 8, False
    group, element, vr, length = explicit.unpack_from(data, pos)
    if group == 0xFFFE:  # items and delimiters have no VR
        group, element, length = implicit_header.unpack_from(data, pos)
        return group << 16 | element, length, 8, False
    if vr in _LONG_VRS:
        if end - pos < 12:
            raise BadFile(f"truncated: the file ends inside the header of ({group:04X},{element:04X})")
        return group << 16 | element, long_length.unpack_from(data, pos + 8)[0], 12, vr == b"UN"
    if vr not in _ALL_VRS:
        raise BadFile(f"corrupt: invalid VR {vr!r} in element ({group:04X},{element:04X}) at offset {pos}")
    return group << 16 | element, length, 8, False


@dataclass
class _Walk:
    """Parsing state: the buffer, its encoding, and the UIDs found at top level."""

    data: memoryview
    implicit: bool
    little: bool
    wanted: dict[int, bytes | memoryview]  # tag -> its value (bytes or memoryview), filled at top level
    stop_after: int | None = None  # a top-level tag past which walking may stop (heads only)
    #: Offsets of the items of top-level encapsulated Pixel Data whose length is odd (PS3.5 A.4 wants even)
    odd_fragments: list[int] = field(default_factory=list)
    #: Tags of elements whose value length is odd (PS3.5 7.1.1 wants even ones), the first few.
    odd_elements: list[int] = field(default_factory=list)

    def header(self, pos: int, end: int) -> tuple[int, int, int, bool]:
        """(tag, value length, header size, holds Implicit VR) of the element at `pos`."""
        return element_header(self.data, pos, end, self.implicit, self.little)

    def elements(self, pos: int, end: int, depth: int, in_item: bool) -> int:
        """Walk elements from `pos`; return the offset after them (or after an item delimiter)."""
        if depth > _MAX_DEPTH:
            raise BadFile(f"corrupt: sequences nested deeper than {_MAX_DEPTH} levels")
        data, wanted = self.data, self.wanted
        while pos < end:
            tag, length, size, as_implicit = element_header(data, pos, end, self.implicit, self.little)
            if tag == _ITEM_END and in_item:
                return pos + size
            if depth == 0 and self.stop_after is not None and tag > self.stop_after:
                return pos
            value = pos + size
            if length == _UNDEFINED:
                saved = self.implicit, self.little
                if as_implicit:  # UN of undefined length holds Implicit VR LE (PS3.5 6.2.2)
                    self.implicit, self.little = True, True
                pos = self.items(value, end, depth + 1, tag)
                self.implicit, self.little = saved
                continue
            if value + length > end:
                raise BadFile(
                    f"truncated: element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs {length} bytes "
                    f"at offset {value} but the file ends at {end}"
                )
            if depth == 0 and tag in wanted:
                wanted[tag] = data[value : value + length]
            if length % 2 and len(self.odd_elements) < 8:
                self.odd_elements.append(tag)
            pos = value + length
        if in_item:
            raise BadFile("truncated: the file ends inside a sequence item")
        return pos

    def items(self, pos: int, end: int, depth: int, owner: int) -> int:
        """Walk the items of an undefined-length value up to its sequence delimiter."""
        while True:
            if end - pos < 8:
                raise BadFile(
                    f"truncated: the file ends inside the value of ({owner >> 16:04X},{owner & 0xFFFF:04X})"
                )
            tag, length, size, _ = self.header(pos, end)
            if tag == _SEQUENCE_END:
                return pos + size
            if tag != _ITEM:
                raise BadFile(
                    f"corrupt: expected an item in ({owner >> 16:04X},{owner & 0xFFFF:04X}) at offset {pos}"
                )
            if length == _UNDEFINED:
                pos = self.elements(pos + size, end, depth, in_item=True)
            elif pos + size + length > end:
                raise BadFile(
                    f"truncated: an item of ({owner >> 16:04X},{owner & 0xFFFF:04X}) needs {length} "
                    f"bytes at offset {pos + size} but the file ends at {end}"
                )
            else:
                if length % 2 and owner == _PIXEL_DATA and depth == 1:
                    self.odd_fragments.append(pos)
                pos += size + length


def _read_meta(data: memoryview, pos: int) -> tuple[dict[str, str], int]:
    """Parse group 0002 (Explicit VR LE) from `pos`; return the UIDs found and the end offset."""
    found: dict[str, str] = {}
    walker = _Walk(data, implicit=False, little=True, wanted={})
    end = len(data)
    while end - pos >= 8:
        (group,) = struct.unpack_from("<H", data, pos)
        if group != 0x0002:
            break
        tag, length, size, _ = walker.header(pos, end)
        if length == _UNDEFINED or pos + size + length > end:
            raise BadFile("truncated or corrupt file meta information (group 0002)")
        if tag in _META_UIDS:
            found[_META_UIDS[tag]] = _uid(data[pos + size : pos + size + length])
        pos += size + length
    return found, pos


def _guess_raw_encoding(data: memoryview) -> str:
    """Transfer syntax of a data set without file meta: DICOM default unless it looks explicit."""
    if len(data) >= 8 and bytes(data[4:6]) in _ALL_VRS:
        return ExplicitVRLittleEndian
    return ImplicitVRLittleEndian


def _looks_like_raw_dataset(data: memoryview) -> bool:
    """A data set without meta starts with a low group (0008 usually), little endian."""
    if len(data) < 8:
        return False
    group, element = struct.unpack_from("<HH", data, 0)
    return 0x0002 < group <= 0x0010 and element <= 0x00FF


#: Bytes of a file read to learn what it is without reading it whole (the file meta and group 0008 fit).
HEAD_SIZE = 64 * 1024


def probe_head(path: str) -> "DicomFile":
    """:func:`probe` of the file at `path`'s first :data:`HEAD_SIZE` bytes (its UIDs and transfer syntax,
    not a proof that it is whole); raises OSError or :class:`BadFile`."""
    with open(path, "rb") as handle:
        return probe(handle.read(HEAD_SIZE), complete=False)


def probe(data: bytes | bytearray | memoryview, *, complete: bool = True, read: Sequence[int] = ()) -> DicomFile:
    """Parse `data` (a whole file, or its head when `complete` is False).

    With ``complete=True`` the whole data set is walked and a truncated or corrupt
    file raises :class:`BadFile`.  With ``complete=False`` parsing stops once the
    SOP UIDs are known; a head cut anywhere is fine.  The text values of the
    top-level tags in `read` are collected in the same walk (``values``), for
    naming a received file without walking it twice.
    """
    view = memoryview(data)
    if len(view) == 0:
        raise BadFile("empty file (0 bytes)")
    has_meta = True
    if len(view) >= 132 and bytes(view[128:132]) == b"DICM":
        meta, offset = _read_meta(view, 132)
    elif len(view) >= 8 and bytes(view[0:2]) == b"\x02\x00":  # meta without preamble
        meta, offset = _read_meta(view, 0)
    elif _looks_like_raw_dataset(view):
        has_meta, meta, offset = False, {"transfer_syntax": _guess_raw_encoding(view)}, 0
    else:
        raise BadFile("not a DICOM file (no 'DICM' prefix and not a raw data set)")
    syntax = meta.get("transfer_syntax")
    if not syntax:
        raise BadFile("the file meta has no Transfer Syntax UID (0002,0010)")
    if meta.get("sop_class") == DICOMDIR:  # DCMTK's storescu skips it too
        raise BadFile("a DICOMDIR (the index of a CD or DVD), not an instance to store")

    wanted: dict[int, bytes | memoryview] = {_SOP_CLASS: b"", _SOP_INSTANCE: b"", **{tag: b"" for tag in read}}
    dataset, start = view, offset
    if syntax == DeflatedExplicitVRLittleEndian:
        dataset, start = _inflate(view[offset:], complete), 0
    walker = _Walk(
        dataset,
        implicit=syntax == ImplicitVRLittleEndian,
        little=syntax != ExplicitVRBigEndian,
        wanted=wanted,
        stop_after=None if complete else _SOP_INSTANCE,
    )
    try:
        walker.elements(start, len(dataset), 0, in_item=False)
    except BadFile:
        if complete:
            raise
    except struct.error as exc:  # pragma: no cover - header() checks lengths first
        raise BadFile(f"corrupt data set: {exc}") from None

    # PS3.10 7.1: the meta repeats the data set's UIDs; when they disagree, the data set is the instance.
    # A whole data set must carry them (DCMTK's storescu refuses one that does not, and receivers answer
    # 0xC000); only a plan, reading a file's head, may take the meta's word for them.
    sop_class = _uid(wanted[_SOP_CLASS]) or ("" if complete else meta.get("sop_class", ""))
    sop_instance = _uid(wanted[_SOP_INSTANCE]) or ("" if complete else meta.get("sop_instance", ""))
    warning = "; ".join(
        f"the file meta's {name} {meta[key]} differs from the data set's {value}, which is sent"
        for name, key, value in (("SOP Class UID", "sop_class", sop_class),
                                 ("SOP Instance UID", "sop_instance", sop_instance))
        if meta.get(key) and value and meta[key] != value)
    if not sop_class:
        raise BadFile("the data set has no SOP Class UID (0008,0016): not an instance to store")
    if not sop_instance:
        raise BadFile("the data set has no SOP Instance UID (0008,0018): not an instance to store")
    for name, value in (("SOP Class UID", sop_class), ("SOP Instance UID", sop_instance),
                        ("Transfer Syntax UID", syntax)):
        if not valid_uid(value):
            raise BadFile(f"invalid {name} {value[:70]!r} (a UID is up to 64 digits and dots)")
    odd = tuple(walker.odd_fragments) if dataset is view else ()  # (deflate encapsulates nothing)
    return DicomFile(sop_class, sop_instance, syntax, offset, has_meta, warning,
                     {tag: _uid(wanted[tag]) for tag in read}, odd,
                     tuple(walker.odd_elements) if dataset is view else ())


def odd_fragments(dataset: bytes | bytearray | memoryview, transfer_syntax: str) -> list[int]:
    """Offsets (in `dataset`) of the odd-length fragments of its top-level encapsulated pixel data (walks the
    whole data set: it must be whole)."""
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        return []
    walker = _Walk(memoryview(dataset), implicit=transfer_syntax == ImplicitVRLittleEndian,
                   little=transfer_syntax != ExplicitVRBigEndian, wanted={})
    walker.elements(0, len(walker.data), 0, in_item=False)
    return walker.odd_fragments


def dataset_to_send(data: bytes | bytearray | memoryview, info: DicomFile) -> bytes | memoryview:
    """The data set of a probed file as it goes to a peer in its own transfer syntax: its bytes as they are,
    or, when its pixel data has odd-length fragments, with those padded (:func:`even_fragments`)."""
    if not info.odd_fragments:
        return memoryview(data)[info.dataset_offset:]
    return memoryview(file_to_send(data, info))[info.dataset_offset:]


def file_to_send(data: bytes | bytearray | memoryview, info: DicomFile) -> bytes | bytearray | memoryview:
    """The whole probed file, its odd-length pixel data fragments padded (WADO-RS sends whole files)."""
    if not info.odd_fragments:
        return data
    return even_fragments(data, info.odd_fragments, info.transfer_syntax != ExplicitVRBigEndian)


def even_fragments(data: bytes | bytearray | memoryview, offsets: Sequence[int], little: bool = True) -> bytes:
    """`data` with each fragment whose item header is at one of `offsets` padded to an even length with one
    trailing NUL (PS3.5 A.4; a JPEG decoder stops at its end-of-image marker, so the image is unchanged).  The
    pixel data element itself has an undefined length: nothing else changes."""
    view = memoryview(data)
    order = "<" if little else ">"
    pieces: list[bytes | memoryview] = []
    start = 0
    for offset in sorted(offsets):
        (length,) = struct.unpack_from(order + "L", view, offset + 4)
        pieces += [view[start:offset + 4], struct.pack(order + "L", length + 1), view[offset + 8:offset + 8 + length],
                   b"\0"]
        start = offset + 8 + length
    pieces.append(view[start:])
    return b"".join(pieces)


def _inflate(deflated: memoryview, complete: bool) -> memoryview:
    """The data set of a Deflated Explicit VR LE file (raw deflate, PS3.5 A.5); its head when not complete."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        if not complete:
            return memoryview(inflater.decompress(deflated, 64 * 1024))
        inflated = inflater.decompress(deflated, MAX_INFLATED)
    except zlib.error as exc:
        if not complete:
            return memoryview(b"")
        raise BadFile(f"corrupt deflated data set: {exc}") from None
    if inflater.unconsumed_tail:
        raise BadFile(f"the deflated data set inflates to more than {MAX_INFLATED >> 20} MiB")
    if not inflater.eof:
        raise BadFile("truncated: the deflated data set ends before its deflate stream does")
    return memoryview(inflated)


_UID = re.compile(r"[0-9]+(\.[0-9]+)*\Z")


def valid_uid(value: str) -> bool:
    """PS3.5 9.1: digits and dots, no empty component, at most 64 characters."""
    return len(value) <= 64 and _UID.match(value) is not None


def top_level_values(dataset: bytes | bytearray | memoryview, transfer_syntax: str, tags: list[int]) -> dict[int, str]:
    """Text values of top-level `tags` in an encoded data set, after proving it whole.

    For instances received over the network: the bytes are checked exactly as a
    file's are (a cut data set raises :class:`BadFile`), and only the few values
    needed to name the file are read (as ASCII: UIDs and IDs).
    """
    return {tag: _uid(value) for tag, value in top_level_bytes(dataset, transfer_syntax, tags).items()}


def top_level_bytes(dataset: bytes | bytearray | memoryview, transfer_syntax: str,
                    tags: list[int]) -> dict[int, bytes]:
    """Raw values of top-level `tags` (b"" when absent), after proving the data set whole."""
    view = memoryview(dataset)
    wanted: dict[int, bytes | memoryview] = {tag: b"" for tag in tags}
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        view = _inflate(view, complete=True)  # read the keys; the caller keeps the bytes as received
    walker = _Walk(
        view,
        implicit=transfer_syntax == ImplicitVRLittleEndian,
        little=transfer_syntax != ExplicitVRBigEndian,
        wanted=wanted,
    )
    walker.elements(0, len(view), 0, in_item=False)
    return {tag: bytes(value) for tag, value in wanted.items()}
