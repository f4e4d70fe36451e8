"""Text from outside (file names, UIDs, a server's words) made safe for a one-line message.

A file name may hold a newline, a server's error comment an escape sequence: printed as they are, they split
one message into two lines (a forged log line) or drive the terminal.  Every human-readable line that
quotes such text passes it through :func:`printable` first; machine output (JSON, CSV) keeps it exact.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` with each control character (C0, DEL, C1, and the Unicode line separators) written as an escape:
    ``\\n``, ``\\t``, ``\\r`` or ``\\xNN``/``\\uNNNN``; everything else, accents included, unchanged."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    character = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(character)
    if named:
        return named
    code = ord(character)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
