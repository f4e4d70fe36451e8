"""Logging setup for gdcmscu's -E/-W/-V/-D and -L.

Our own messages are one line each; -D adds the protocol's detail (proposed and
accepted contexts, PDU sizes).  Tracebacks of handled exceptions are never printed: the formatter keeps only the
exception's one-line summary.
"""

from __future__ import annotations

import logging
from typing import TextIO
import sys

from dicomscu.cli.request import DEBUG, ERROR, VERBOSE, WARNING
from dicomscu.errors import UsageError

_LEVELS = {ERROR: logging.ERROR, WARNING: logging.WARNING, VERBOSE: logging.INFO, DEBUG: logging.DEBUG}


class OneLineFormatter(logging.Formatter):
    """``W: message``; an attached exception becomes ``(ExcType: message)``."""

    def format(self, record: logging.LogRecord) -> str:
        message = f"{record.levelname[0]}: {record.getMessage()}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            message += f" ({type(exc).__name__}: {exc})"
        return message


def setup(level: str, log_file: str | None = None, stream: TextIO | None = None) -> None:
    """Route dicomscu's logs (and pydicom's warnings) to `stream` (stderr), or `log_file`, at `level`."""
    handler: logging.Handler
    if log_file:
        try:  # truncated at start, as gdcmscu's -L is
            handler = logging.FileHandler(log_file, mode="w", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{log_file}: cannot write the log file: {exc.strerror or exc}",
                             option="log_file") from None
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(OneLineFormatter())
    ours = logging.getLogger("dicomscu")
    ours.handlers[:] = [handler]
    ours.setLevel(_LEVELS[level])
    ours.propagate = False
    # pydicom's warnings.warn() calls (an odd value in a received data set...): only when asked.
    logging.captureWarnings(True)
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.handlers[:] = [handler]
    warnings_logger.setLevel(logging.WARNING if level in (VERBOSE, DEBUG) else logging.CRITICAL + 1)
    warnings_logger.propagate = False
