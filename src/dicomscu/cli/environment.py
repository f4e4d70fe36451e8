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


#: The variables that name the user's locale (the query's character set comes from them, as gdcmscu's does).
LOCALE_VARIABLES = ("LC_ALL", "LC_CTYPE", "LANG")


def as_the_user_set_it(environ: Mapping[str, str], initial: str = "/proc/self/environ") -> Mapping[str, str]:
    """`environ` with the locale variables the process was started with.

    Python coerces a C or POSIX locale to C.UTF-8 before any of our code runs (PEP 538), and writes
    ``LC_CTYPE=C.UTF-8`` into the environment: read from ``os.environ``, cron's and a container's usual
    locale would look like UTF-8.  The kernel keeps the environment the program was started with
    (``/proc/self/environ`` on Linux), which the coercion does not touch; where it cannot be read,
    `environ` is taken as it is.
    """
    try:
        with open(initial, "rb") as handle:
            block = handle.read()
    except OSError:
        return environ
    original = {}
    for entry in block.split(b"\0"):
        name, equals, value = entry.partition(b"=")
        if equals and name.decode("ascii", "replace") in LOCALE_VARIABLES:
            original[name.decode("ascii")] = os.fsdecode(value)
    if all(environ.get(name) == original.get(name) for name in LOCALE_VARIABLES):
        return environ
    restored = {name: value for name, value in environ.items() if name not in LOCALE_VARIABLES}
    restored.update(original)
    return restored


@dataclass
class Environment:
    stdin: TextIO = field(default_factory=lambda: sys.stdin)
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    environ: Mapping[str, str] = field(default_factory=lambda: as_the_user_set_it(os.environ))
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
