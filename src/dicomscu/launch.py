"""The installed ``dicomscu`` command (and ``python -m dicomscu``): Ctrl-C and SIGTERM handled from the first
instruction.

Everything else is imported after the signal handlers are in place, and start-up (imports, parsing) is
a deferred region (:func:`dicomscu.transport.interrupts.hold_start_up`): an interrupt there is honoured
as soon as the command can stop cleanly, with its exit status (130, 143) and a whole stdout document,
never as a traceback or a Ctrl-C lost.
"""

from __future__ import annotations

import signal
import sys

from dicomscu.errors import Terminated
from dicomscu.transport import interrupts


def main() -> None:
    interrupts.hold_start_up()
    interrupts.handle_signals()
    try:
        from dicomscu.app import main as run

        code = run()
    except KeyboardInterrupt as exc:  # one that got past the command's own handling (raised again late)
        code = 143 if isinstance(exc, Terminated) else 130
    _exit(code)


def _exit(code: int) -> None:
    """End with `code`, whatever signal comes now: the command has said what it did (an interrupt that landed
    in the interpreter's own shutdown would turn exit 130 into a death by SIGINT, stdout unflushed)."""
    import logging
    import os

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader gone (| head), or a stream closed
            pass
    os._exit(code)
