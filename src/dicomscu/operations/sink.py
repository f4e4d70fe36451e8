"""Where retrieved instances go, whoever delivers them: C-GET sub-operations on our own association, or
the associations a server opens to our C-MOVE SCP.  One sink, so both check and count alike.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import TYPE_CHECKING, Callable

from dicomscu.files.instances import PATIENT_ID, SERIES_UID, STUDY_UID, InstanceWriter
from dicomscu.files.probe import BadFile, top_level_values, valid_uid

if TYPE_CHECKING:  # pragma: no cover
    from dicomscu.operations.retrieval import RetrieveReport

LOGGER = logging.getLogger("dicomscu")
SOP_INSTANCE = 0x00080018


class InstanceSink:
    """Writes received instances with `writer`, counts them in `report`; thread-safe (a C-MOVE may
    deliver over several associations at once)."""

    def __init__(self, writer: InstanceWriter, report: "RetrieveReport",
                 on_progress: Callable[["RetrieveReport"], object] | None = None) -> None:
        self.writer = writer
        self.report = report
        self.on_progress = on_progress
        self._lock = threading.Lock()

    def store(self, sop_class: str, sop_instance: str, dataset: bytes | bytearray, syntax: str) -> int:
        """Write one received instance; the C-STORE status to answer."""
        with self._lock:
            status = _write(self.writer, dataset, sop_class, sop_instance, syntax, self.report)
            if self.on_progress is not None:
                self.on_progress(self.report)
        return status


def _write(writer: InstanceWriter, dataset: bytes | bytearray | memoryview, sop_class: str, sop_instance: str,
           syntax: str, report: "RetrieveReport") -> int:
    """Write one received instance; the C-STORE status to answer (PS3.4 B.2.3).

    The data set says which instance it is: a request naming another SOP Instance UID
    is written under the data set's, with a warning.  A second, different data set
    under a UID already written in this retrieval is refused (0x0111) and the first
    kept; an instance outside the studies or series asked for is written, with a
    warning.  Each is counted in the report.
    """
    try:
        values = top_level_values(dataset, syntax, [SOP_INSTANCE, PATIENT_ID, STUDY_UID, SERIES_UID])
    except BadFile as exc:
        report.write_errors.append(f"{sop_instance}: {exc}")
        return 0xC000  # Error: cannot understand
    uid = values[SOP_INSTANCE]
    if uid != sop_instance:
        if not valid_uid(uid):
            report.write_errors.append(f"{sop_instance}: the data set's SOP Instance UID {uid[:70]!r} is not a UID")
            return 0xC000
        LOGGER.warning("the server sent SOP Instance UID %s in the request but %s in the data set: written as %s",
                       sop_instance, uid, uid)
        report.renamed += 1
    digest = hashlib.sha1(dataset).digest()
    earlier = report.received.get(uid)
    if earlier == digest:
        return 0x0000  # the same data set again: written already
    if earlier is not None:
        LOGGER.warning("the server sent two different data sets as SOP Instance %s: the first is kept", uid)
        report.conflicting += 1
        return 0x0111  # Duplicate SOP Instance
    if report.scope and not report.scope.contains(values[STUDY_UID], values[SERIES_UID]):
        LOGGER.warning("instance %s is outside what was asked for (study %s, series %s): written all the same",
                       uid, values[STUDY_UID], values[SERIES_UID])
        report.outside += 1
    try:
        writer.write(dataset, sop_class, uid, syntax, values)
    except BadFile as exc:
        report.write_errors.append(f"{uid}: {exc}")
        return 0xC000
    except OSError as exc:
        report.write_errors.append(f"{uid}: cannot write: {exc.strerror or exc}")
        return 0xA700  # Refused: out of resources
    report.received[uid] = digest
    report.written += 1
    return 0x0000
