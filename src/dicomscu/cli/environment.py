"""What the command line reads and writes, injectable (as httpie's ``Environment``).

The application never touches ``sys.stdout`` or ``os.environ`` itself: it gets an
:class:`Environment`, so a test can run it in-process with string buffers and a
made-up environment, and a wrapper (the gdcmscu name, ``-L``) can reroute a stream
without patching globals.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from typing import Mapping, TextIO


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a file
        return False


@dataclass
class Environment:
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    #: None: ask the stream.  Tests set them to see what a terminal gets (tables, progress bars).
    stdout_isatty: bool | None = None
    stderr_isatty: bool | None = None

    def __post_init__(self) -> None:
        if self.stdout_isatty is None:
            self.stdout_isatty = _isatty(self.stdout)
        if self.stderr_isatty is None:
            self.stderr_isatty = _isatty(self.stderr)

    def out(self, text: str = "", end: str = "\n") -> None:
        """A line of results on stdout, flushed (a script may be reading as we go)."""
        self.stdout.write(text + end)
        self.stdout.flush()

    def err(self, text: str, end: str = "\n") -> None:
        self.stderr.write(text + end)
        self.stderr.flush()

    def with_stdout(self, stream: TextIO) -> "Environment":
        """The same environment with results going to `stream` (gdcmscu's name sends them to stderr)."""
        return replace(self, stdout=stream, stdout_isatty=_isatty(stream))
