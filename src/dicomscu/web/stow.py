"""Store over STOW-RS (PS3.18 10.5): files sent as they are, in multipart batches streamed from disk.

Each file is read and proven whole (the probe every store uses) just before its
part is written to the request body, which goes out chunked: a batch is never held
in memory, one file at a time is.  The server's answer (DICOM JSON: Referenced SOP
Sequence, Failed SOP Sequence with its Failure Reason) gives each file its outcome,
reported and journaled exactly as a C-STORE's are; a file the answer does not
mention failed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import uuid
from typing import Callable, Iterator, Sequence

from dicomscu.errors import DicomscuError, OperationFailed, UsageError
from dicomscu.files.inputs import expand
from dicomscu.files.probe import DicomFile
from dicomscu.operations.fanout import fan_out
from dicomscu.operations.options import StoreOptions, given
from dicomscu.operations.results import ALREADY, FAILED, OK, WARNED, FileResult, StoreReport, recorder
from dicomscu.operations.store import load_input
from dicomscu.web.service import WebPeer, WebService

#: A batch ends after this many files or bytes, whichever comes first.
BATCH_FILES = 200
BATCH_BYTES = 64 << 20
_REFERENCED, _FAILED, _INSTANCE, _REASON, _WARNING = "00081199", "00081198", "00081155", "00081197", "00081196"


def _batches(paths: Sequence[str], recursive: bool, emit) -> Iterator[list[tuple[str, int]]]:
    """Lists of (path, size) to send together; inputs that cannot be read are reported here (journaled
    instances when their part would be written, see :func:`_body`)."""
    import os

    batch: list[tuple[str, int]] = []
    size = 0
    for entry in expand(paths, recursive):
        if not isinstance(entry, str):
            emit(load_input(entry))
            continue
        try:
            length = os.stat(entry).st_size
        except OSError as exc:
            emit(FileResult(entry, "skipped", f"cannot read: {exc.strerror or exc}"))
            continue
        batch.append((entry, length))
        size += length
        if len(batch) >= BATCH_FILES or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _body(batch: list[tuple[str, int]], boundary: bytes, sent: dict[str, tuple[str, DicomFile, int]],
          emit, journal) -> Iterator[bytes]:
    """The multipart body of `batch`, one file read at a time; what is sent is recorded in `sent`."""
    for path, _ in batch:
        loaded = load_input(path)
        if isinstance(loaded, FileResult):
            emit(loaded)
            continue
        _, data, info = loaded
        if journal is not None and info.sop_instance in journal:
            emit(FileResult(path, ALREADY, "already stored (journal)", sop_instance=info.sop_instance))
            continue
        sent[info.sop_instance] = (path, info, len(data))
        yield b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n"
        yield data
        yield b"\r\n"
    yield b"--" + boundary + b"--\r\n"


def _outcomes(answer: dict, sent: dict[str, tuple[str, DicomFile, int]]) -> Iterator[FileResult]:
    """Each sent file's result from the STOW-RS answer."""
    def items(key: str) -> list[dict]:
        return list((answer.get(key) or {}).get("Value") or [])

    def text(item: dict, key: str) -> str:
        values = (item.get(key) or {}).get("Value") or [""]
        return str(values[0])

    done: set[str] = set()
    for item in items(_REFERENCED):
        uid = text(item, _INSTANCE)
        if uid in sent and uid not in done:
            path, info, size = sent[uid]
            warning = text(item, _WARNING)
            outcome = WARNED if warning else OK
            yield FileResult(path, outcome, f"STOW-RS warning 0x{int(warning):04X}" if warning else "",
                             sop_instance=uid, size=size)
            done.add(uid)
    for item in items(_FAILED):
        uid = text(item, _INSTANCE)
        if uid in sent and uid not in done:
            path, info, size = sent[uid]
            reason = text(item, _REASON)
            detail = f"0x{int(reason):04X}" if reason.isdigit() else (reason or "no reason given")
            yield FileResult(path, FAILED, f"STOW-RS failed: {detail}", sop_instance=uid, size=size)
            done.add(uid)
    for uid, (path, info, size) in sent.items():
        if uid not in done:
            yield FileResult(path, FAILED, "the STOW-RS answer does not mention this instance", sop_instance=uid,
                             size=size)


def store(peer: WebPeer, paths: Sequence[str], options: StoreOptions | None = None, *,
          on_result: Callable[[FileResult], object] | None = None, recursive: bool | None = None,
          jobs: int | None = None, journal=None) -> StoreReport:
    """STOW-RS the DICOM files among `paths` to `peer`, ``jobs`` batches at a time, as `options` (or the
    keywords: :class:`~dicomscu.operations.options.StoreOptions`) say; storage commitment is DIMSE's."""
    import threading

    options = given(options, StoreOptions, recursive=recursive, jobs=jobs, journal=journal)
    if options.commit:
        from dicomscu.operations.target import COMMIT_OVER_WEB

        raise UsageError(COMMIT_OVER_WEB, option="commit")
    if isinstance(options.journal, (str, os.PathLike)):
        from dicomscu.files.journal import journal_for

        with journal_for(options.journal, peer) as opened:
            return store(peer, paths, dataclasses.replace(options, journal=opened), on_result=on_result)
    recursive, jobs, journal = options.recursive, options.jobs, options.journal
    started = time.perf_counter()
    report = StoreReport(peer)  # type: ignore[arg-type]
    lock = threading.Lock()
    emit = recorder(report, journal, on_result)

    with WebService(peer, connections=jobs) as service:
        def send(batch: list[tuple[str, int]]) -> None:
            boundary = uuid.uuid4().hex.encode()
            sent: dict[str, tuple[str, DicomFile, int]] = {}
            headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary.decode()}',
                       "Accept": "application/dicom+json"}
            def again():  # the same parts, for a retry or a redirect: what was said of each file is not said twice
                sent.clear()
                return _body(batch, boundary, sent, lambda result: None, journal)

            try:
                response = service.request("POST", "/studies", body=_body(batch, boundary, sent, emit, journal),
                                           headers=headers, accept=(409,), what="STOW-RS store", body_again=again)
                answer = json.loads(response.data) if response.data else {}
            except (DicomscuError, ValueError) as exc:
                error = exc if isinstance(exc, DicomscuError) else OperationFailed(
                    f"{peer}: the STOW-RS answer is not DICOM JSON ({exc})")
                with lock:
                    report.error = report.error or error
                for uid, (path, _, size) in sent.items():
                    emit(FileResult(path, FAILED, str(error), sop_instance=uid, size=size))
                return
            for result in _outcomes(answer if isinstance(answer, dict) else {}, sent):
                emit(result)

        if jobs == 1:
            for batch in _batches(paths, recursive, emit):  # streamed: the file list is never held
                send(batch)
        else:
            batches = list(_batches(paths, recursive, emit))

            def send_all(share: list[list[tuple[str, int]]]) -> None:
                for batch in share:
                    send(batch)

            fan_out(send_all, [batches[i::jobs] for i in range(jobs) if batches[i::jobs]], "stow")
    report.seconds = time.perf_counter() - started
    return report
