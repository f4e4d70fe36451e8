"""Human-readable lines for results and summaries (pure: data in, strings out)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dicomscu.printable import printable
from dicomscu.operations.results import ALREADY, FAILED, OK, SKIPPED, WARNED, FileResult, StoreReport

if TYPE_CHECKING:  # pragma: no cover
    from dicomscu.operations.commit import CommitReport
    from dicomscu.operations.echo import EchoResult
    from dicomscu.operations.find import FindReport
    from dicomscu.operations.retrieval import RetrieveReport


def echo_line(result: EchoResult) -> str:
    return f"{_echo_name(result)} {result.peer}: {result.status.category} ({result.seconds * 1000:.1f} ms)"


def _echo_name(result: EchoResult) -> str:
    return _service(result.peer, "C-ECHO", "DICOMweb echo (QIDO-RS)")


def _service(peer, dimse: str, web: str) -> str:
    """The operation's name as the peer speaks it: DIMSE, or DICOMweb for a URL."""
    from dicomscu.web import is_url

    return web if is_url(str(peer)) else dimse


def file_line(result: FileResult) -> str:
    label = {OK: "stored", WARNED: "stored with warning", FAILED: "failed", SKIPPED: "skipped",
             ALREADY: "already stored"}[result.outcome]
    line = f"{printable(result.path)}: {label}"  # a newline in a file name cannot forge a second line
    return f"{line}: {printable(result.message)}" if result.message else line


def human_size(size: float) -> str:
    """Bytes in the units of the progress bar (rich's decimal ones): "512 bytes", "1.2 kB", "3.4 MB"."""
    if size < 1000:
        count = int(size)
        return f"{count} byte" if count == 1 else f"{count} bytes"
    for power, unit in enumerate(("kB", "MB", "GB", "TB", "PB", "EB"), start=1):
        if size < 1000 ** (power + 1) or unit == "EB":
            return f"{size / 1000 ** power:,.1f} {unit}"
    raise AssertionError("unreachable")


def store_summary(report: StoreReport) -> str:
    c = report.counts
    total = sum(c.values()) + report.not_sent
    rate = report.bytes_sent / report.seconds if report.seconds > 0 else 0.0
    parts = [
        f"{_service(report.peer, 'C-STORE', 'STOW-RS')} {report.peer}: {report.stored} of {total} file(s) stored "
        f"({human_size(report.bytes_sent)} in {report.seconds:.2f} s, {human_size(rate)}/s)",
        f"{c[WARNED]} with warnings",
        f"{c[FAILED]} failed",
        f"{c[SKIPPED]} skipped (not sendable)",
    ]
    if report.not_sent:
        parts.append(f"{report.not_sent} not sent")
    if c[ALREADY]:
        parts.append(f"{c[ALREADY]} already stored (journal)")
    return ", ".join(parts)


def find_summary(report: FindReport) -> str:
    level = f" {report.query.level}" if report.query.level else ""
    worklist = report.query.model.name == "worklist"
    web, model = ("UPS-RS", "Unified Procedure Steps") if worklist else ("QIDO-RS", report.query.model.title)
    service = _service(report.peer, "C-FIND", web)
    if service == "C-FIND":
        model = report.query.model.title
    line = (f"{service} {report.peer} ({model}{level}): "
            f"{report.matches} match(es), "
            f"{report.status or 'no final status'} in {report.seconds:.2f} s")
    if report.cancel_ignored:
        return line + " (stopped by --limit: the peer ignored our C-CANCEL, so the association was aborted)"
    return line + (" (stopped by --limit: C-CANCEL sent)" if report.cancelled else "")


def retrieve_summary(report: RetrieveReport, directory: str) -> str:
    status = report.status or ("nothing to retrieve" if not report.requests else "no final status")
    parts = [f"{report.operation} {report.peer}: {status}",
             f"{report.completed} completed", f"{report.failed} failed", f"{report.warning} warning(s)"]
    if report.operation == "C-GET" or report.written:
        parts.append(f"{report.written} file(s) written to {directory}")
    if report.already_present:
        parts.append(f"{report.already_present} already present (skipped)")
    for count, what in ((report.renamed, "written under their data set's SOP Instance UID"),
                        (report.conflicting, "refused as a different data set under a UID already received"),
                        (report.outside, "outside the studies or series asked for")):
        if count:
            parts.append(f"{count} {what}")
    from dicomscu.operations.retrieval import refused_note

    note = (report.advice + refused_note(report)) if report.failed else ""
    return ", ".join(parts) + f" in {report.seconds:.2f} s" + note


# -- JSON summaries (--format json), for scripts and monitoring ---------------------


def status_json(status) -> dict | None:
    if status is None:
        return None
    return {"code": status.code, "hex": f"0x{status.code:04X}", "category": status.category, "meaning": status.meaning}


def error_json(error) -> dict | None:
    """The "error" member of every --format json document: kind, message and exit code (or None)."""
    if error is None:
        return None
    return {"kind": type(error).__name__, "message": str(error), "exit_code": error.exit_code}


def failure_json(operation: str, peer, error) -> dict:
    """The whole document of an operation that failed before it had a result to show."""
    return {"operation": operation, "peer": str(peer) if peer is not None else None, "status": None,
            "error": error_json(error), "exit_code": error.exit_code}


def echo_json(result: EchoResult) -> dict:
    return {"operation": _echo_name(result), "peer": str(result.peer), "status": status_json(result.status),
            "seconds": round(result.seconds, 4), "error": None, "exit_code": 0}


def file_json(result: FileResult) -> dict:
    return {"path": result.path, "outcome": result.outcome, "message": result.message,
            "status": status_json(result.status), "sop_instance_uid": result.sop_instance, "bytes": result.size}


def store_json_summary(report: StoreReport) -> dict:
    return {"stored": report.stored, "ok": report.counts[OK], "warnings": report.counts[WARNED],
            "failed": report.counts[FAILED], "skipped": report.counts[SKIPPED], "not_sent": report.not_sent,
            "already_stored": report.counts[ALREADY],
            "bytes": report.bytes_sent, "seconds": round(report.seconds, 4),
            "error": str(report.error) if report.error else None}


def exit_code(report, error=None) -> int:
    """The one mapping from an operation's outcome to the exit status: the code of the error that stopped it
    (given, the report's own, or its storage commitment's), else 0 when everything asked for was done, else 1
    (see the README's exit status table)."""
    if error is None:
        error = getattr(report, "error", None)
    if error is None and getattr(report, "commitment", None) is not None:
        error = report.commitment.error
    if error is not None:
        return error.exit_code
    return 0 if report.ok else 1


def commit_summary(report: CommitReport) -> str:
    """The storage commitment line: what the peer took responsibility for, and what not."""
    line = (f"Storage commitment {report.peer}: {len(report.committed)} of {report.requested} instance(s) "
            f"committed ({report.seconds:.2f} s), {len(report.failed)} failed, {len(report.unanswered)} unanswered")
    if report.already:
        line += f", {report.already} already committed (journal)"
    return line


def commit_failure_lines(report: CommitReport) -> list[str]:
    """One line per instance not committed: its UID and why (the Failure Reason, or no answer)."""
    lines = [f"{printable(f.reference.sop_instance)}: not committed: {f.reason_text}" for f in report.failed]
    if report.unanswered:
        if report.error is not None:
            why = "not asked, or not answered: the association failed (see the error)"
        elif report.refused and not report.committed and not report.failed:
            why = f"the request was refused ({report.refused[0]})"
        else:
            why = "no result came"
        lines += [f"{printable(ref.sop_instance)}: not committed: {why}" for ref in report.unanswered[:20]]
        if len(report.unanswered) > 20:
            lines.append(f"... and {len(report.unanswered) - 20} more without a result")
    return lines


def commit_json(report: CommitReport) -> dict:
    """``--format json`` of a storage commitment: counts, each failure with its reason, what got no answer."""
    return {"operation": "storage commitment", "peer": str(report.peer), "requested": report.requested,
            "committed": len(report.committed), "already_committed": report.already,
            "failed": [{"sop_class_uid": f.reference.sop_class, "sop_instance_uid": f.reference.sop_instance,
                        "failure_reason": f.reason, "reason": f.reason_text} for f in report.failed],
            "unanswered": [{"sop_class_uid": ref.sop_class, "sop_instance_uid": ref.sop_instance}
                           for ref in report.unanswered],
            "refused_requests": [status_json(status) for status in report.refused],
            "transactions": report.transactions, "results_on_new_association": report.reports_on_new_association,
            "seconds": round(report.seconds, 4), "error": error_json(report.error),
            "exit_code": exit_code(report)}


def retrieve_json(report: RetrieveReport, directory: str, error=None) -> dict:
    status = exit_code(report, error)
    return {"operation": report.operation, "peer": str(report.peer), "status": status_json(report.status),
            "completed": report.completed, "failed": report.failed, "warning": report.warning,
            "written": report.written, "write_errors": report.write_errors,
            "already_present": report.already_present, "requests": report.requests, "directory": directory,
            "refused_classes": report.refused_classes, "renamed": report.renamed,
            "conflicting": report.conflicting, "outside": report.outside,
            "seconds": round(report.seconds, 4), "error": error_json(error), "exit_code": status}


class StoreJsonStream:
    """``--format json`` for C-STORE: one object, its "files" array written as results arrive."""

    def __init__(self, peer, stream=None) -> None:
        import json
        import sys

        self._json = json
        self._stream = stream or sys.stdout
        self._count = 0
        self._stream.write(f'{{"operation": "C-STORE", "peer": {json.dumps(str(peer))}, "files": [')

    def add(self, result: FileResult) -> None:
        separator = "," if self._count else ""
        self._stream.write(f"{separator}\n  {self._json.dumps(file_json(result))}")
        self._count += 1
        self._stream.flush()  # a reader of a pipe sees each result as it comes (a write each: microseconds)

    def end(self, report: StoreReport) -> None:
        commitment = commit_json(report.commitment) if report.commitment is not None else None
        self._close(store_json_summary(report), error_json(report.error), exit_code(report), commitment)

    def fail(self, error) -> None:
        """Close the document after an error that left no report."""
        self._close(None, error_json(error), error.exit_code)

    def _close(self, summary, error, exit_code: int, commitment: dict | None = None) -> None:
        dumps = self._json.dumps
        more = f', "commitment": {dumps(commitment)}' if commitment is not None else ""
        self._stream.write(f'\n], "summary": {dumps(summary)}, "error": {dumps(error)}{more}, '
                           f'"exit_code": {exit_code}}}\n')
        self._stream.flush()
