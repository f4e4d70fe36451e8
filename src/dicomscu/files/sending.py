"""How one instance goes to a peer: the one rule every path that hands an instance on uses.

The client's C-STORE (:mod:`dicomscu.operations.store`), serve's C-GET and C-MOVE
sub-operations (:mod:`dicomscu.server.pacs`) and its WADO-RS (:mod:`dicomscu.server.web`)
all ask the same two questions of a probed file and the syntaxes a peer accepts:

* :func:`syntax_to_send` — in which transfer syntax: as stored when that is accepted
  (unless told to decompress); else re-encoded into an accepted uncompressed syntax
  (Explicit VR first: private VRs survive it), a compressed file decompressed only into
  little endian (pixel data in big endian is a byte-swapping trap) and only when a
  decoder for its syntax is installed; None when none of that is possible;
* :func:`payload` — the data set bytes in that syntax: the file's own bytes when the
  syntax is its own (odd-length pixel data fragments padded, PS3.5 A.4; an odd deflate
  stream given its trailing NUL, PS3.5 A.5), else :func:`~dicomscu.files.codec.converted`.

So one file is sent the same way by every path, and a fix to the rule reaches them all.
"""

from __future__ import annotations

from typing import Callable, Sequence

from dicomscu import uids
from dicomscu.files.probe import DicomFile, dataset_to_send

#: The uncompressed syntaxes a file may be re-encoded into, most preferred first.
REENCODE_INTO = (uids.EXPLICIT_VR_LE, uids.IMPLICIT_VR_LE, uids.EXPLICIT_VR_BE)
#: What a compressed file may be decompressed into.
DECOMPRESS_INTO = (uids.EXPLICIT_VR_LE, uids.IMPLICIT_VR_LE)


def offered_to(info: DicomFile, context_for: Callable[[str, str], object | None]) -> list[str]:
    """The syntaxes a file may go in that the peer accepted for its class (``context_for(class, syntax)``: an
    association's accepted context, or None): its own first, then :data:`REENCODE_INTO`."""
    return [syntax for syntax in (info.transfer_syntax, *REENCODE_INTO)
            if context_for(info.sop_class, syntax) is not None]


def syntax_to_send(stored: str, accepted: Sequence[str] | None, *, decompress: bool = False) -> str | None:
    """The syntax to send a file stored in `stored` in, given the syntaxes the peer `accepted` for its class (None:
    anything); `decompress` sends a compressed file uncompressed even when its own syntax is accepted."""
    compressed = stored not in uids.CONVERTIBLE_SYNTAXES
    if accepted is None and not (decompress and compressed):
        return stored
    if stored in (accepted or ()) and not (decompress and compressed):
        return stored
    offered = accepted if accepted is not None else DECOMPRESS_INTO  # (in the peer's order of preference)
    if not compressed:
        return next((syntax for syntax in offered if syntax in REENCODE_INTO), None)
    if not decodable(stored):
        return None  # compressed, and no decoder here: sent as it is or not at all
    return next((syntax for syntax in offered if syntax in DECOMPRESS_INTO), None)


def decodable(syntax: str) -> bool:
    from dicomscu.files.codec import decodable as codec_decodable  # (pydicom: only for a compressed file)

    return codec_decodable(syntax)


def payload(data: bytes | bytearray | memoryview, info: DicomFile, syntax: str) -> bytes | memoryview:
    """The file's data set in `syntax` (a :func:`syntax_to_send` answer); raises when its pixel data cannot be
    converted (the caller reports that file and goes on)."""
    if syntax == info.transfer_syntax:
        sent = dataset_to_send(data, info)
        if syntax == uids.DEFLATED_EXPLICIT_VR_LE and len(sent) % 2:
            return bytes(sent) + b"\0"  # PS3.5 A.5: an odd deflate stream gets one trailing NUL
        return sent
    from dicomscu.files.codec import converted

    return converted(memoryview(data)[info.dataset_offset:], info.transfer_syntax, syntax)
