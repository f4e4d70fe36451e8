"""What a store run reports: per-file outcomes and totals (plain data, light to import for the output layer)."""

from __future__ import annotations

from collections import Counter
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from dicomscu.errors import DicomscuError
from dicomscu.operations.status import Status
from dicomscu.transport.peer import Peer

if TYPE_CHECKING:  # pragma: no cover
    from dicomscu.operations.commit import CommitReport

OK, WARNED, FAILED, SKIPPED = "ok", "warning", "failed", "skipped"
#: Already confirmed by the peer in an earlier run (``--journal``): not sent again.
ALREADY = "already"


@dataclass(frozen=True)
class FileResult:
    """What happened to one input file."""

    path: str
    outcome: str  # "ok", "warning", "failed" or "skipped"
    message: str = ""
    status: Status | None = None
    sop_instance: str = ""
    size: int = 0
    #: The instance's SOP Class UID, when it was read (what storage commitment names it by, with the instance).
    sop_class: str = ""


@dataclass
class StoreReport:
    """Totals of a store run (per-file details go to the ``on_result`` callback)."""

    peer: Peer
    planned: int = 0
    planned_bytes: int = 0
    counts: Counter = field(default_factory=Counter)
    bytes_sent: int = 0
    seconds: float = 0.0
    not_sent: int = 0
    #: The association-level failure that stopped (part of) the run, if any.
    error: DicomscuError | None = None
    #: What the peer said when asked to commit the instances stored (``commit=True``), else None.
    commitment: "CommitReport | None" = None

    @property
    def ok(self) -> bool:
        """Every file stored (and, when commitment was asked, every instance committed)."""
        return (self.error is None and not (self.counts[FAILED] or self.counts[SKIPPED] or self.not_sent)
                and (self.commitment is None or self.commitment.ok))

    @property
    def stored(self) -> int:
        return self.counts[OK] + self.counts[WARNED]


def recorder(report: StoreReport, journal, on_result: Callable[[FileResult], object] | None) -> Callable[[FileResult], None]:
    """What a store does with each file's result, whatever the protocol: count it, journal what the peer
    confirmed, hand it on.  Thread-safe (``-j`` sends from several threads)."""
    lock = threading.Lock()

    def emit(result: FileResult) -> None:
        with lock:
            report.counts[result.outcome] += 1
            if result.outcome in (OK, WARNED):
                report.bytes_sent += result.size
                if journal is not None:
                    journal.record(result.sop_instance, result.path, str(report.peer))
            if on_result:
                on_result(result)

    return emit
