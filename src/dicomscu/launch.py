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
    signal.signal(signal.SIGINT, lambda _signum, _frame: interrupts.deliver(KeyboardInterrupt()))
    signal.signal(signal.SIGTERM, lambda _signum, _frame: interrupts.deliver(Terminated()))
    from dicomscu.app import main as run

    sys.exit(run())
