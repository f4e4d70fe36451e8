"""Errors that end an operation, each with the exit code the command line returns.

Every failure a user can meet is one of these classes, carrying a one-line message
that names what failed and, where we know it, what to do about it.  The command
line prints ``str(error)`` and exits with ``error.exit_code``; nothing else.

Exit codes (stable, documented in the README and in ``--help``):

====  ==========================================================
0     success
1     the operation ran but something failed (a file, a status)
2     usage error (bad option, bad value, missing host)
3     could not connect (connection refused, unreachable)
4     unknown host (name does not resolve)
5     timeout (connect, association, DIMSE or network read)
6     association rejected by the peer, or no context accepted
7     association aborted, or the peer broke the protocol
====  ==========================================================
"""

from __future__ import annotations

from typing import Callable


class DicomscuError(Exception):
    """Base class: a failure with a one-line message and an exit code.

    `option` names the setting at fault as the Python API spells it (``tls_ca``,
    ``port_scp``...) and `hint` says what to do; the message itself names neither.
    ``str()`` gives ``"tls_ca /x: no such file"``; the command line renders the same
    error with its own spelling of the option (``--tls-ca``), see :meth:`render`.
    """

    exit_code = 1

    def __init__(self, message: str, *, option: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.option = option
        self.hint = hint

    def render(self, spell: Callable[[str], str] | None = None) -> str:
        """The one-line message, the option spelled by `spell` (the CLI's flag names), the hint after it."""
        text = self.message
        if self.option:
            text = f"{spell(self.option) if spell else self.option} {text}"
        return f"{text} ({self.hint})" if self.hint else text

    def __str__(self) -> str:
        return self.render()


class UsageError(DicomscuError):
    """The command line or an API argument is wrong; nothing was sent."""

    exit_code = 2


class MissingHost(UsageError):
    """No host was given (under the gdcmscu name, the help is printed instead, as gdcmscu does)."""


class ConnectionFailed(DicomscuError):
    """TCP connection could not be made (refused, unreachable, reset)."""

    exit_code = 3


class UnknownHost(DicomscuError):
    """The host name does not resolve."""

    exit_code = 4


class PeerTimeout(DicomscuError):
    """The peer did not answer within one of the configured timeouts."""

    exit_code = 5


class AssociationRejected(DicomscuError):
    """The peer rejected the association, or accepted none of its contexts."""

    exit_code = 6


class AssociationAborted(DicomscuError):
    """The association was aborted, or the peer broke the upper-layer protocol."""

    exit_code = 7


class OperationFailed(DicomscuError):
    """The operation completed its exchange but the result is a failure."""

    exit_code = 1
    #: What was done before the failure (a RetrieveReport, for --format json), when known.
    report: object | None = None


class Terminated(KeyboardInterrupt):
    """SIGTERM: raised in the main thread so that it stops every operation as cleanly as Ctrl-C does."""


class Stopped(DicomscuError):
    """The user stopped the run: Ctrl-C (exit 130) or SIGTERM (exit 143).  Used to report it, not raised."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        terminated = isinstance(interrupt, Terminated)
        super().__init__("terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)")
        self.exit_code = 143 if terminated else 130
