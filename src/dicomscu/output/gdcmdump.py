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
from typing import NamedTuple

from pydicom.datadict import dictionary_description, dictionary_VM, dictionary_VR

COLUMN = 66
_NUMBERS = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "UV": "Q", "SV": "q"}
#: VRs whose values gdcmdump prints as bytes in hex.
_BINARY = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}
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
    creators: set[tuple[int, int]] = set()  # (group, block) of the private creators met at this level
    while pos + 8 <= end:
        tag, length, pos = _header(data, pos)
        if tag == _ITEM_END:
            return pos
        group, element = tag >> 16, tag & 0xFFFF
        if group % 2 and 0x10 <= element <= 0xFF:
            creators.add((group, element))
        entry = _entry(tag, creators)
        shown = f" ({entry.shown_vr})" if entry.shown_vr else ""
        left = f"{indent}({group:04x},{element:04x}) ??{shown}"
        if entry.vr == "SQ":
            defined = length != _UNDEFINED
            value_end = pos + length if defined else end
            if defined and length == 0:
                left += " (Sequence with defined length)"
            lines.append(_line(left, length if defined else "u/l", entry.vm, entry.name))
            pos = _items(data, pos, value_end, depth + 1, lines)
            continue
        value = bytes(data[pos:pos + length])
        pos += length
        text, count = _value(entry.vr, value)
        marker = entry.marker if entry.marker is not None else _vm_marker(entry.vm, count)
        lines.append(_line(f"{left} {text}", length, entry.vm, entry.name, marker))
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


class _Entry(NamedTuple):
    vr: str  # how the value is read
    shown_vr: str  # what the line says (empty: nothing, as for an unknown private element)
    vm: str
    name: str
    marker: int | None = None  # a VM always shown in parentheses (None: only when the value's disagrees)


#: VRs the dictionary leaves open in Implicit VR, as gdcmdump reads and shows them.
_AMBIGUOUS = {"US or SS": ("US", "US or SS => US"), "OB or OW": ("UN", "OB or OW => UN")}


def _entry(tag: int, creators: set[tuple[int, int]]) -> _Entry:
    """How gdcmdump names and reads `tag`: the data dictionary's entry, private creators and elements as it
    shows them (an element of a private block is unknown to it: no VR, VM "?", always "(1)")."""
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2:
        if 0x10 <= element <= 0xFF:
            return _Entry("LO", "LO", "1", "Private Creator")
        if element >= 0x1000:
            known = (group, element >> 8) in creators
            return _Entry("??", "", "?", "GDCM:UNKNOWN" if known else "Private Element With Empty Private Creator", 1)
    try:
        vr, vm, name = dictionary_VR(tag), dictionary_VM(tag), dictionary_description(tag)
    except KeyError:
        return _Entry("??", "", "?", "GDCM:UNKNOWN", 1)
    read, shown = _AMBIGUOUS.get(vr, (vr if " or " not in vr else "OB", vr))
    return _Entry(read, shown, vm, name)


def _vm_marker(vm: str, count: int) -> int | None:
    """The value's VM when it disagrees with the dictionary's `vm` (gdcmdump's "(2)"), else None."""
    if count == 0 or vm in ("", "?"):
        return None
    low, _, high = vm.partition("-")
    try:
        least = int(low)
    except ValueError:
        return None
    if not high:
        return None if count == least else count
    if high.endswith("n"):
        step = int(high[:-1] or 1)
        return None if count >= least and count % step == 0 else count
    return None if least <= count <= int(high) else count


def _value(vr: str, value: bytes) -> tuple[str, int]:
    """(the value as gdcmdump prints it, its VM)."""
    if not value:
        return "(no value)", 0
    if vr in _NUMBERS:
        code = "<" + _NUMBERS[vr]
        size = struct.calcsize(code)  # standard sizes: a UL is 4 bytes, not a C long
        numbers = struct.unpack(f"<{len(value) // size}{_NUMBERS[vr]}", value[: len(value) // size * size])
        return "\\".join(f"{n:g}" if isinstance(n, float) else str(n) for n in numbers), len(numbers)
    if vr == "AT":
        tags = struct.unpack(f"<{len(value) // 2}H", value[: len(value) // 2 * 2])
        return "\\".join(f"({g:04x},{e:04x})" for g, e in zip(tags[0::2], tags[1::2])), len(tags) // 2
    if vr in _BINARY or (vr == "??" and not _is_text(value)):  # one value, but a UN's VM is its bytes
        return "\\".join(f"{b:02x}" for b in value), len(value) if vr in ("UN", "??") else 1
    text = value[:-1] if value.endswith(b"\0") else value  # one trailing NUL (a UID's padding) is not shown
    shown = "".join(chr(b) if 0x20 <= b < 0x7F or 0x09 <= b <= 0x0D else "." for b in text)
    return f"[{shown}]", len(text.split(b"\\"))


def _is_text(value: bytes) -> bool:
    """Whether an element of unknown VR reads as text (gdcmdump shows it in brackets, else as bytes)."""
    return all(0x20 <= b < 0x7F or 0x09 <= b <= 0x0D for b in value.rstrip(b"\0"))


def _line(left: str, length, vm: str, name: str, marker: int | None = None) -> str:
    """gdcmdump's line: the comment from column 66, or 9 spaces after a longer left part."""
    padding = " " * max(COLUMN - len(left), 9)
    return f"{left}{padding}# {length},{vm} " + (f"({marker})  {name}" if marker is not None else name)
