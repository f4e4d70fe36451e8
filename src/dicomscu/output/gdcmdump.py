"""C-FIND answers in gdcm's dump layout, as gdcmscu prints them (``--format dump``).

Scripts written for gdcmscu read its output: each answer is preceded by
``Find Response: N`` and listed the way ``gdcmdump`` lists the same data set in
Implicit VR Little Endian::

    (0010,0010) ?? (PN) [Doe^John]                                    # 8,1 Patient's Name

The tag in lower-case hex, ``??`` for a VR the stream does not carry, the
dictionary's VR, the value (text in brackets, bytes outside printable ASCII as
``.``; numbers bare; ``(no value)`` when empty), then, from column 66, the value
length, the dictionary's VM and the attribute's name.  tests/test_gdcmscu.py
compares these lines with the real gdcmdump's.
"""

from __future__ import annotations

import struct

from pydicom.datadict import dictionary_description, dictionary_VM, dictionary_VR

COLUMN = 66
_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF


def answer_lines(answer) -> list[str]:
    """The dump of a C-FIND answer (a RawAnswer): its own bytes when they are Implicit VR LE already."""
    if answer.syntax == "1.2.840.10008.1.2":
        return dump_lines(answer.raw)
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, answer.dataset())
    return dump_lines(buffer.getvalue())


def dump_lines(implicit_dataset: bytes) -> list[str]:
    """The lines gdcmdump prints for a data set encoded in Implicit VR Little Endian."""
    lines: list[str] = []
    _elements(memoryview(implicit_dataset), 0, len(implicit_dataset), 0, lines)
    return lines


def _elements(data: memoryview, pos: int, end: int, depth: int, lines: list[str]) -> int:
    indent = "  " * depth
    while pos + 8 <= end:
        tag, length, pos = _header(data, pos)
        if tag == _ITEM_END:
            return pos
        vr, vm, name = _dictionary(tag)
        left = f"{indent}({tag >> 16:04x},{tag & 0xFFFF:04x}) ?? ({vr})"
        if vr == "SQ":
            defined = length != _UNDEFINED
            value_end = pos + length if defined else end
            if defined and length == 0:
                left += " (Sequence with defined length)"
            lines.append(_line(left, length if defined else "u/l", vm, name))
            pos = _items(data, pos, value_end, depth + 1, lines)
            continue
        value = bytes(data[pos:pos + length])
        pos += length
        lines.append(_line(f"{left} {_value(vr, value)}", length, vm, name))
    return pos


def _items(data: memoryview, pos: int, end: int, depth: int, lines: list[str]) -> int:
    indent = "  " * depth
    while pos + 8 <= end:
        tag, length, pos = _header(data, pos)
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            return end
        defined = length != _UNDEFINED
        lines.append(f"{indent}(fffe,e000) na (Item with {'defined' if defined else 'undefined'} length)")
        pos = _elements(data, pos, pos + length if defined else end, depth + 1, lines)
    return pos


def _header(data: memoryview, pos: int) -> tuple[int, int, int]:
    """(tag, value length, position of the value) of the Implicit VR LE element header at `pos`."""
    group, element, length = struct.unpack_from("<HHL", data, pos)
    return group << 16 | element, length, pos + 8


def _dictionary(tag: int) -> tuple[str, str, str]:
    try:
        return dictionary_VR(tag).split(" or ")[0], dictionary_VM(tag), dictionary_description(tag)
    except KeyError:
        return "UN", "1", "?"


def _value(vr: str, value: bytes) -> str:
    if not value:
        return "(no value)"
    if vr in _NUMBERS:
        size = struct.calcsize("<" + _NUMBERS[vr])  # standard sizes: a UL is 4 bytes, not a C long
        numbers = struct.unpack(f"<{len(value) // size}{_NUMBERS[vr]}", value[: len(value) // size * size])
        return "\\".join(f"{n:g}" if isinstance(n, float) else str(n) for n in numbers)
    text = value.rstrip(b"\0") if vr == "UI" else value
    return "[" + "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in text) + "]"


def _line(left: str, length, vm: str, name: str) -> str:
    return f"{left.ljust(COLUMN)}# {length},{vm} {name}"
