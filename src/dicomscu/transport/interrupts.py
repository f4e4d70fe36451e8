"""Ctrl-C and SIGTERM that never land in the middle of a received PDU.

Python raises KeyboardInterrupt between any two bytecodes.  Landing between the
read of a PDU and its hand-over to the protocol core, or half-way through the
core's bookkeeping, it loses bytes or a message fragment, and the C-CANCEL that
follows a Ctrl-C then meets a stream it can no longer read (seen as "a data set
fragment before its command set", once in a few runs).  So the command line's
signal handlers call :func:`deliver`: outside a :func:`deferred` region the
interrupt is raised at once, as before; inside one (a link reading and parsing,
main thread only) it waits for the region's next :func:`check`, which the link
makes before each wait for data, at most :data:`SLICE` seconds apart.  An interrupt raised at once
stays pending until it is acknowledged (:func:`acknowledge`), so that one swallowed on its way (C code
that clears the error it meets, as an extension module's import can) is raised again at the next safe point.

Start-up is one such region (:func:`hold_start_up`, from the installed command's first
instruction, :mod:`dicomscu.launch`): an interrupt during the imports and the parsing
waits for :func:`end_start_up`, where the command is ready to stop cleanly (its JSON
document opened, say), a fraction of a second later at most.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

#: Longest a deferred interrupt waits: the link waits for data in slices of this many seconds.
SLICE = 0.2
_depth = 0  # deferred regions entered by the main thread (the only one signal handlers run in)
_pending: BaseException | None = None
_starting = False  # hold_start_up() was called and end_start_up() not yet


def deliver(interrupt: BaseException) -> None:
    """From a signal handler: raise `interrupt` now, or at the deferred region's next safe point.

    Raised now, it is also kept pending until the code that catches it says so (:func:`acknowledge`): an
    exception raised from a signal handler while C code runs (an extension module being imported, say)
    can be cleared by that code, and the next safe point then raises it again; a Ctrl-C is never lost."""
    global _pending
    main = threading.current_thread() is threading.main_thread()
    if main:
        _pending = _pending or interrupt
    if _depth and main:
        return
    raise interrupt


def handle_signals() -> None:
    """Ctrl-C and SIGTERM delivered as KeyboardInterrupt and Terminated (:func:`deliver`), from the main
    thread only (a test may run the command line in a thread of its own)."""
    import signal

    from dicomscu.errors import Terminated

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda _signum, _frame: deliver(KeyboardInterrupt()))
        signal.signal(signal.SIGTERM, lambda _signum, _frame: deliver(Terminated()))


def acknowledge() -> None:
    """The interrupt in flight has reached code that handles it: no safe point raises it again."""
    global _pending
    _pending = None


def deferring() -> bool:
    """Whether this thread is in a deferred region (its waits must be sliced, see :data:`SLICE`)."""
    return bool(_depth) and threading.current_thread() is threading.main_thread()


def check() -> None:
    """A safe point: raise the interrupt that arrived meanwhile, if any."""
    global _pending
    if _pending is not None and threading.current_thread() is threading.main_thread():
        interrupt, _pending = _pending, None
        raise interrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Interrupts wait for :func:`check` (or the end of the region) while the block runs; other threads are
    not concerned (no signal handler runs in them)."""
    global _depth
    main = threading.current_thread() is threading.main_thread()
    if main:
        _depth += 1
    try:
        yield
    finally:
        if main:
            _depth -= 1
            if not _depth:
                check()  # the user's interrupt wins over whatever ended the region


def hold_start_up() -> None:
    """From the command's first instruction (main thread): interrupts wait for :func:`end_start_up`."""
    global _depth, _starting
    if not _starting and threading.current_thread() is threading.main_thread():
        _starting = True
        _depth += 1


def end_start_up() -> None:
    """The command is ready to stop cleanly: an interrupt that came during start-up is raised now."""
    global _depth, _starting
    if _starting and threading.current_thread() is threading.main_thread():
        _starting = False
        _depth -= 1
        if not _depth:
            check()


def take_pending() -> BaseException | None:
    """The interrupt waiting for a safe point, if any, which is then no longer pending (for a caller that
    reports it itself)."""
    global _pending, _depth, _starting
    if _starting:
        _starting = False
        _depth -= 1
    interrupt, _pending = _pending, None
    return interrupt
