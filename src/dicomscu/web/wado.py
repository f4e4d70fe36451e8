"""Get over WADO-RS (PS3.18 10.4): studies, series or instances into files, as C-GET writes them.

The response, ``multipart/related; type="application/dicom"``, is parsed as a stream
(:class:`MultipartReader`): each part goes to a temporary file in the output folder
(a :class:`~dicomscu.files.spool.Spool`) as its bytes arrive, so memory stays flat whatever the study's size.  A complete part
is proven whole (the same probe as everywhere), named by its own UIDs with the same
layouts as C-GET, and renamed into place; a part cut short by the end of the stream,
or not DICOM, leaves no file and is counted failed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Iterable, Iterator, NamedTuple

from urllib3.exceptions import HTTPError

from dicomscu.errors import OperationFailed, UsageError
from dicomscu.files.instances import PATIENT_ID, SERIES_UID, STUDY_UID, InstanceWriter, prepare_directory
from dicomscu.files.probe import BadFile, probe, valid_uid
from dicomscu.files.spool import Spool
from dicomscu.operations.fanout import fan_out
from dicomscu.operations.options import given
from dicomscu.operations.retrieval import RetrieveOptions, RetrieveReport, Scope, combine
from dicomscu.operations.status import Status
from dicomscu.web.service import WebPeer, WebService

LOGGER = logging.getLogger("dicomscu")

#: Bytes asked of the response per read.
CHUNK = 256 * 1024
#: Longest part header block accepted (a few hundred bytes in practice).
MAX_PART_HEADERS = 64 * 1024


class MultipartError(ValueError):
    """The multipart body is not what its Content-Type says (boundary missing, truncated...)."""


class MultipartReader:
    """A ``multipart/related`` body fed in chunks; events out: ("part", headers), ("data", bytes), ("end", None).

    RFC 2046 5.1: parts are separated by CRLF ``--boundary``; the last one is followed
    by ``--``.  Everything before the first delimiter is preamble; data is released as
    soon as it cannot be the start of a delimiter.
    """

    def __init__(self, boundary: str) -> None:
        self._delimiter = b"\r\n--" + boundary.encode("latin-1")
        self._buffer = bytearray(b"\r\n")  # the first delimiter may start the body directly
        self._state = "preamble"
        self.done = False

    def feed(self, chunk: bytes) -> Iterator[tuple[str, object]]:
        self._buffer += chunk
        while True:
            if self._state == "preamble":
                at = self._buffer.find(self._delimiter)
                if at < 0:
                    del self._buffer[:max(len(self._buffer) - len(self._delimiter), 0)]
                    return
                del self._buffer[:at + len(self._delimiter)]
                self._state = "after-delimiter"
            elif self._state == "after-delimiter":
                if len(self._buffer) < 2:
                    return
                if self._buffer[:2] == b"--":
                    self._state, self.done = "epilogue", True
                    yield ("end", None)
                    return
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_PART_HEADERS:
                        raise MultipartError("a part's headers are longer than 64 KiB")
                    return
                headers = {}
                for line in bytes(self._buffer[:end]).decode("latin-1").split("\r\n"):
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                del self._buffer[:end + 4]
                self._state = "body"
                yield ("part", headers)
            elif self._state == "body":
                at = self._buffer.find(self._delimiter)
                if at < 0:
                    keep = len(self._delimiter)
                    if len(self._buffer) > keep:
                        yield ("data", bytes(self._buffer[:-keep]))
                        del self._buffer[:-keep]
                    return
                if at:
                    yield ("data", bytes(self._buffer[:at]))
                del self._buffer[:at + len(self._delimiter)]
                self._state = "after-delimiter"
            else:  # epilogue: ignored
                self._buffer.clear()
                return


def boundary_of(content_type: str) -> str:
    """The boundary parameter of a multipart Content-Type."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"')
    raise MultipartError(f"no boundary in Content-Type {content_type!r}")


class Resource(NamedTuple):
    """A WADO-RS resource: a study, a series of it, or an instance of that ("" below the level named)."""

    study: str
    series: str = ""
    instance: str = ""

    @property
    def path(self) -> str:
        return (f"/studies/{self.study}" + (f"/series/{self.series}" if self.series else "")
                + (f"/instances/{self.instance}" if self.instance else ""))


def resources(identifiers: Iterable) -> Iterator[Resource]:
    """The WADO-RS resources of C-GET style identifiers (a study, series or instance UID each, lists
    expanded)."""
    for identifier in identifiers:
        level = str(identifier.get("QueryRetrieveLevel", "") or "").upper()
        studies = _uids(identifier, "StudyInstanceUID")
        if not studies:
            raise UsageError("WADO-RS retrieves by StudyInstanceUID: give -k StudyInstanceUID=... "
                             "(and SeriesInstanceUID, SOPInstanceUID below it)")
        series = _uids(identifier, "SeriesInstanceUID") if level in ("SERIES", "IMAGE") else []
        instances = _uids(identifier, "SOPInstanceUID") if level == "IMAGE" else []
        if (instances and len(series) != 1) or (series and len(studies) != 1):
            raise UsageError("WADO-RS needs one study UID above series, and one series UID above instances")
        for study in studies:
            if not series:
                yield Resource(study)
            for one in series:
                if not instances:
                    yield Resource(study, one)
                for instance in instances:
                    yield Resource(study, one, instance)


def _missing(service: WebService, targets: list[Resource], writer: InstanceWriter,
             report: RetrieveReport) -> Iterator[Resource]:
    """``--skip-existing``: what `targets` hold that is not in the output yet, from a QIDO-RS search of
    their instances (each looked for on disk, counted as already present when there): a target none of
    which is there as it is, a series none of which is there whole, else each missing instance."""
    from dicomscu.web.qido import pages

    fields = [("includefield", "00100020"), ("includefield", "0020000E")]
    for target in targets:
        found: dict[str, list[str]] = {}  # series -> its instances not on disk
        sizes: dict[str, int] = {}
        present = report.already_present
        search = Resource(target.study, target.series).path + "/instances"
        for item in pages(service, search, [*fields, *([("00080018", target.instance)] if target.instance else [])]):
            uid, series, patient = (_json_text(item, tag) for tag in ("00080018", "0020000E", "00100020"))
            sizes[series] = sizes.get(series, 0) + 1
            if writer.exists(uid, patient, target.study, series):
                report.already_present += 1
            else:
                found.setdefault(series, []).append(uid)
        if report.already_present == present:  # none of it there (or none found): the resource as asked
            yield target
            continue
        for series, uids in found.items():
            if len(uids) == sizes[series] and not target.instance:
                yield Resource(target.study, series)
            else:
                yield from (Resource(target.study, series, uid) for uid in uids)


def _by_series(service: WebService, target: Resource) -> list[Resource]:
    """A study as its series (a QIDO-RS search), to spread over connections; any other resource as it is."""
    from dicomscu.web.qido import pages

    if target.series:
        return [target]
    series = [_json_text(item, "0020000E") for item in pages(service, target.path + "/series", [])]
    return [Resource(target.study, uid) for uid in series if uid] or [target]


def _json_text(item: dict, tag: str) -> str:
    """The first value of `tag` in a DICOM JSON object, as text ("" when absent)."""
    values = (item.get(tag) or {}).get("Value") or [""]
    return str(values[0])


def _uids(identifier, keyword: str) -> list[str]:
    value = identifier.get(keyword, "") or ""
    values = str(value).split("\\") if isinstance(value, str) else [str(v) for v in value]
    uids = [v.strip() for v in values if v.strip()]
    for uid in uids:
        if not valid_uid(uid):
            raise UsageError(f"{keyword} {uid!r} is not a UID (WADO-RS allows no wildcards)")
    return uids


def _keep(part: Spool, writer: InstanceWriter, report: RetrieveReport) -> None:
    """Prove a received part whole, name it by its own UIDs, rename it into place; count it."""
    try:
        if part.error is not None:
            raise part.error
        with part.mapped() as view:
            info = probe(view, read=(PATIENT_ID, STUDY_UID, SERIES_UID))  # proven whole, and its names
        values = info.values
        digest = _digest(part.path)
        earlier = report.received.get(info.sop_instance)
        if earlier is not None:  # the server sent this instance already: written (and counted) once
            part.discard()
            if earlier != digest:
                LOGGER.warning("the server sent two different data sets as SOP Instance %s: the first is kept",
                               info.sop_instance)
                report.conflicting += 1
            return
        part.place(writer.path_for(info.sop_instance, values[PATIENT_ID], values[STUDY_UID], values[SERIES_UID]))
    except (BadFile, OSError, BufferError) as exc:
        part.discard()
        report.failed += 1
        report.write_errors.append(f"a WADO-RS part: {exc}")
        return
    report.received[info.sop_instance] = digest
    report.completed += 1
    report.written += 1
    if report.scope and not report.scope.contains(values[STUDY_UID], values[SERIES_UID]):
        report.outside += 1


def _digest(path: str) -> bytes:
    """SHA-1 of a received file, read in blocks (its pages never all in memory at once)."""
    import hashlib

    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.digest()


def get(peer: WebPeer, identifiers: list, options: RetrieveOptions, on_progress=None,
        jobs: int | None = None) -> RetrieveReport:
    """WADO-RS each study, series or instance named by `identifiers` into ``options.output``; with
    ``options.jobs`` (or `jobs`, which overrides it) > 1 that many at once (over as many connections), a study
    split into its series when there are fewer resources than that."""
    options = given(options, RetrieveOptions, jobs=jobs)
    jobs = options.jobs
    started = time.perf_counter()
    report = RetrieveReport(peer, "WADO-RS")  # type: ignore[arg-type]
    report.scope = Scope.of(identifiers)
    writer = InstanceWriter(prepare_directory(options.output), options.layout, options.tag)
    accept = 'multipart/related; type="application/dicom"' + ("; transfer-syntax=*" if options.accept_all_syntaxes
                                                              else "")
    with WebService(peer, connections=max(jobs, 4)) as service:
        targets = list(resources(identifiers))
        if options.skip_existing:
            targets = list(_missing(service, targets, writer, report))
        if jobs > 1 and len(targets) < jobs:
            targets = [one for target in targets for one in _by_series(service, target)]
        parts = [RetrieveReport(peer, "WADO-RS") for _ in range(max(1, min(jobs, len(targets))))]  # type: ignore
        for part in parts:
            part.scope = report.scope
        lock = threading.Lock()

        def progress(_part) -> None:
            if on_progress is not None:
                with lock:
                    total = combine(peer, parts)  # type: ignore[arg-type]
                on_progress(total)

        def one_connection(index: int) -> None:
            for target in targets[index::len(parts)]:
                parts[index].requests += 1
                _fetch(service, target.path, accept, writer, parts[index], progress)

        fan_out(one_connection, range(len(parts)), "wado")
    total = combine(peer, parts)  # type: ignore[arg-type]
    total.operation, total.scope, total.already_present = "WADO-RS", report.scope, report.already_present
    report = total
    report.status = Status(0x0000 if not report.failed else 0xB000,
                           "success" if not report.failed else "warning", "")
    report.seconds = time.perf_counter() - started
    if report.failed and not report.completed:
        raise _failed(report, "no instance could be written")
    return report


def _fetch(service: WebService, path: str, accept: str, writer: InstanceWriter, report: RetrieveReport,
           on_progress) -> None:
    response = service.request("GET", path, headers={"Accept": accept}, stream=True, what="WADO-RS retrieval")
    current: Spool | None = None
    try:
        content_type = response.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/related"):
            raise OperationFailed(f"{service.peer}: WADO-RS answered {content_type or 'no Content-Type'}, "
                                  "not multipart/related")
        if response.status == 206:  # PS3.18: some instances could not be sent as asked (or at all)
            why = response.headers.get("Warning", "")
            report.write_errors.append(f"{path}: the server sent only part of it (HTTP 206 Partial Content"
                                       + (f": {why})" if why else ")"))
        reader = MultipartReader(boundary_of(content_type))
        for chunk in response.stream(CHUNK):
            for kind, value in reader.feed(chunk):
                if kind == "part":
                    if current is not None:
                        _keep(current, writer, report)
                    current = Spool(writer.directory, tag=writer.tag)
                elif kind == "data" and current is not None:
                    current.write(value)  # type: ignore[arg-type]
                elif kind == "end" and current is not None:
                    _keep(current, writer, report)
                    current = None
                if on_progress is not None and kind != "data":
                    on_progress(report)
        if not reader.done:
            raise OperationFailed(f"{service.peer}: the WADO-RS response for {path} ended before its closing "
                                  "boundary (truncated, or not the boundary its Content-Type gives)")
    except MultipartError as exc:
        raise OperationFailed(f"{service.peer}: the WADO-RS response for {path} is not valid multipart: {exc}") \
            from None
    except HTTPError as exc:
        raise OperationFailed(f"{service.peer}: the WADO-RS response for {path} broke off: {exc}") from None
    finally:
        if current is not None:  # a part cut short: no file, one failure
            current.discard()
            report.failed += 1
        response.release_conn()


def _failed(report: RetrieveReport, why: str) -> OperationFailed:
    error = OperationFailed(f"WADO-RS from {report.peer} failed: {why}")
    error.report = report
    return error
