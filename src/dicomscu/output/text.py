"""Human-readable lines for results and summaries (pure: data in, strings out)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomscu.operations.store import FAILED, OK, SKIPPED, WARNED, FileResult, StoreReport

if TYPE_CHECKING:  # pragma: no cover
    from dicomscu.operations.echo import EchoResult
    from dicomscu.operations.find import FindReport
    from dicomscu.operations.retrieve import RetrieveReport


def echo_line(result: EchoResult) -> str:
    return f"C-ECHO {result.peer}: {result.status.category} ({result.seconds * 1000:.1f} ms)"


def file_line(result: FileResult) -> str:
    label = {OK: "stored", WARNED: "stored with warning", FAILED: "failed", SKIPPED: "skipped"}[result.outcome]
    line = f"{result.path}: {label}"
    return f"{line}: {result.message}" if result.message else line


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def store_summary(report: StoreReport) -> str:
    c = report.counts
    total = sum(c.values()) + report.not_sent
    rate = report.bytes_sent / report.seconds / 1e6 if report.seconds > 0 else 0.0
    parts = [
        f"C-STORE {report.peer}: {report.stored} of {total} file(s) stored "
        f"({megabytes(report.bytes_sent)} in {report.seconds:.2f} s, {rate:.1f} MB/s)",
        f"{c[WARNED]} with warnings",
        f"{c[FAILED]} failed",
        f"{c[SKIPPED]} skipped (not sendable)",
    ]
    if report.not_sent:
        parts.append(f"{report.not_sent} not sent")
    return ", ".join(parts)


def find_summary(report: FindReport) -> str:
    level = f" {report.query.level}" if report.query.level else ""
    line = (f"C-FIND {report.peer} ({report.query.model.title}{level}): {report.matches} match(es), "
            f"{report.status} in {report.seconds:.2f} s")
    return line + (" (stopped by --limit: C-CANCEL sent)" if report.cancelled else "")


def retrieve_summary(report: RetrieveReport, directory: str) -> str:
    parts = [f"{report.operation} {report.peer}: {report.status or 'no final status'}",
             f"{report.completed} completed", f"{report.failed} failed", f"{report.warning} warning(s)"]
    if report.operation == "C-GET" or report.written:
        parts.append(f"{report.written} file(s) written to {directory}")
    if report.already_present:
        parts.append(f"{report.already_present} already present (skipped)")
    return ", ".join(parts) + f" in {report.seconds:.2f} s"
