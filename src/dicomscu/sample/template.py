"""Encode many similar data sets fast: what they share once, only what differs per file.

The images of one series share all but a handful of elements (SOP Instance UID,
instance number, position, pixel data).  pydicom spends about 2 ms per file
re-encoding the shared ones; a :class:`Template` encodes them once, with pydicom,
into the byte runs between the varying tags, and each file is then those runs joined
with its few freshly encoded elements.  The bytes are exactly what pydicom would
write for the whole data set (the tests compare them).
"""

from __future__ import annotations

import struct
from typing import Iterable

from pydicom.charset import convert_encodings
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element

PREAMBLE = bytes(128) + b"DICM"


class Template:
    """The data sets `shared` plus one element per tag of `varying`, encoded in one syntax."""

    def __init__(self, shared: Dataset, varying: Iterable[int], implicit_vr: bool) -> None:
        self.implicit_vr = implicit_vr
        self.encodings = convert_encodings(shared.get("SpecificCharacterSet", "ISO_IR 6"))
        self.varying = sorted(varying)
        runs: list[list[bytes]] = [[] for _ in range(len(self.varying) + 1)]
        slot = 0
        for tag in sorted(shared.keys()):
            if tag in self.varying:
                raise ValueError(f"{tag} is both shared and varying")
            while slot < len(self.varying) and tag > self.varying[slot]:
                slot += 1
            runs[slot].append(self.encode(shared[tag]))
        self.runs = [b"".join(run) for run in runs]

    def encode(self, element: DataElement) -> bytes:
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, self.implicit_vr
        write_data_element(buffer, element, self.encodings)
        return buffer.getvalue()

    def render(self, elements: dict[int, DataElement]) -> list[bytes]:
        """The encoded data set as a list of chunks (write them with ``writelines``)."""
        chunks = [self.runs[0]]
        for tag, run in zip(self.varying, self.runs[1:]):
            chunks.append(self.encode(elements[tag]))
            chunks.append(run)
        return chunks


class MetaTemplate:
    """The file meta information (always Explicit VR Little Endian) of files that differ by instance UID."""

    INSTANCE = 0x00020003

    def __init__(self, sop_class: str, transfer_syntax: str, implementation_uid: str,
                 implementation_version: str) -> None:
        meta = Dataset()
        meta.FileMetaInformationVersion = b"\x00\x01"
        meta.MediaStorageSOPClassUID = sop_class
        meta.TransferSyntaxUID = transfer_syntax
        meta.ImplementationClassUID = implementation_uid
        meta.ImplementationVersionName = implementation_version
        self._template = Template(meta, [self.INSTANCE], implicit_vr=False)

    def render(self, sop_instance: str) -> list[bytes]:
        chunks = self._template.render({self.INSTANCE: DataElement(self.INSTANCE, "UI", sop_instance)})
        length = sum(map(len, chunks))
        # (0002,0000) File Meta Information Group Length, UL: the bytes of the group after it
        return [PREAMBLE, struct.pack("<HH2sHI", 2, 0, b"UL", 4, length), *chunks]
