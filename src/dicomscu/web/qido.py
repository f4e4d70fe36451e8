"""Find over QIDO-RS (PS3.18 10.6), and worklists over UPS-RS search (PS3.18 11.9): the same
query, the same answers as a C-FIND gives.

The identifier built for C-FIND becomes the query string: a key with a value is a
matching parameter (wildcards and date ranges as in DIMSE), a key without one an
``includefield``; an attribute in a sequence item is named by its path
(``ScheduledStationNameCodeSequence.CodeValue``).  The level picks the resource
(/studies, /series, /instances, below the study or series when its UID is given); a
worklist query searches the Unified Procedure Steps (/workitems), which take the
same query syntax.  Answers arrive in pages (``limit``/``offset``), are decoded from
DICOM JSON, and are handed over encoded as a C-FIND answer would be, so every output
format works unchanged.
"""

from __future__ import annotations

import json
import time
from typing import Callable, Iterator

from dicomscu.errors import OperationFailed, UsageError
from dicomscu.operations.find import FindReport, RawAnswer
from dicomscu.operations.options import FindOptions, given
from dicomscu.operations.status import Status
from dicomscu.query.build import QUERY_LEVEL, Query
from dicomscu.web.service import WebPeer, WebService

#: Answers asked for per request.
PAGE = 1000
_RESOURCES = {"STUDY": "studies", "SERIES": "series", "IMAGE": "instances"}
_SUCCESS = Status(0x0000, "success", "")
#: What a server without UPS-RS answers a search of /workitems with.
_NO_SUCH_SERVICE = (404, 405, 501)


def query_parameters(query: Query) -> list[tuple[str, str]]:
    """(name, value) pairs of the query string for `query`'s identifier."""
    fields: list[tuple[str, str]] = []

    def add(dataset, prefix: str) -> None:
        for element in dataset:
            if element.tag in (QUERY_LEVEL, 0x00080005):
                continue
            name = prefix + (element.keyword or f"{element.tag:08X}")
            if element.VR == "SQ" and element.value:
                add(element.value[0], name + ".")  # PS3.18 8.3.4.1: {attributeID}.{attributeID}
                continue
            value = "" if element.VR == "SQ" or element.value is None else str(element.value)
            if value in ("", "*"):
                fields.append(("includefield", name))
            else:
                fields.append((name, value.replace("\\", ",") if element.VR == "UI" else value))

    add(query.dataset, "")
    return fields


#: Modality worklist (DIMSE) attributes a UPS has not, and what the Unified Procedure Step has instead.
_NOT_IN_UPS = {
    "ScheduledProcedureStepSequence": "ScheduledProcedureStepStartDateTime, ScheduledStationNameCodeSequence, "
                                      "ScheduledWorkitemCodeSequence, ProcedureStepLabel",
    "RequestedProcedureID": "ReferencedRequestSequence[0].RequestedProcedureID",
    "AccessionNumber": "ReferencedRequestSequence[0].AccessionNumber",
    "RequestedProcedureDescription": "ReferencedRequestSequence[0].RequestedProcedureDescription",
}


def resource_of(query: Query) -> str:
    """The QIDO resource path for the query's level (below a study or series named by a single UID); for a
    worklist query, the UPS-RS workitems."""
    if query.model.name == "worklist":
        for element in query.dataset:
            if element.keyword in _NOT_IN_UPS:
                raise UsageError(f"{element.keyword} is a modality worklist (DIMSE) attribute; over DICOMweb "
                                 f"--worklist searches Unified Procedure Steps (UPS-RS), which have "
                                 f"{_NOT_IN_UPS[element.keyword]} (see --queryhelp --worklist)", option="keys")
        return "/workitems"
    level = (query.level or "STUDY").upper()
    if level not in _RESOURCES:
        raise UsageError(f"QIDO-RS has no {level.lower()} level: use --study, --series or --image")
    path = ""
    study = str(query.dataset.get("StudyInstanceUID", "") or "")
    series = str(query.dataset.get("SeriesInstanceUID", "") or "")
    if level in ("SERIES", "IMAGE") and study and "\\" not in study and "*" not in study:
        path = f"/studies/{study}"
        if level == "IMAGE" and series and "\\" not in series and "*" not in series:
            path += f"/series/{series}"
    return f"{path}/{_RESOURCES[level]}"


def answers(service: WebService, query: Query, limit: int | None = None) -> Iterator[dict]:
    """The DICOM JSON objects matching `query`, page after page."""
    path = resource_of(query)
    yield from pages(service, path, query_parameters(query), limit)


def pages(service: WebService, path: str, fields: list[tuple[str, str]], limit: int | None = None) -> Iterator[dict]:
    """The DICOM JSON objects a search of `path` with `fields` finds, page after page, until an empty page (a
    short page is no end: a server may cap its pages below the limit asked)."""
    what = "UPS-RS search" if path == "/workitems" else "QIDO-RS query"
    offset = 0
    previous_first = None
    while True:
        size = PAGE if limit is None else min(PAGE, limit - offset)
        response = service.request("GET", path, fields=[*fields, ("limit", str(size)), ("offset", str(offset))],
                                   headers={"Accept": "application/dicom+json"}, what=what,
                                   accept=_NO_SUCH_SERVICE if path == "/workitems" else ())
        if response.status in _NO_SUCH_SERVICE:
            raise OperationFailed(f"{service.peer} offers no UPS-RS: the search of /workitems was answered HTTP "
                                  f"{response.status}; for a modality worklist use DIMSE (HOST PORT --worklist)")
        if response.status == 204 or not response.data:
            return
        try:
            page = json.loads(response.data)
        except ValueError as exc:
            raise OperationFailed(f"{service.peer}: the {what} answer is not JSON ({exc}): "
                                  f"{response.data[:100]!r}") from None
        if not isinstance(page, list):
            raise OperationFailed(f"{service.peer}: the {what} answer is not a JSON array of results")
        if not page:
            return
        first = json.dumps(page[0], sort_keys=True)
        if first == previous_first:  # the same page again: the server ignores offset, we would loop forever
            raise OperationFailed(f"{service.peer}: the {what} answered offset={offset} with the page it gave "
                                  "before (the server ignores offset): the answers past the first page cannot "
                                  "be had, so the search is incomplete")
        previous_first = first
        yield from page
        offset += len(page)
        # a page shorter than asked is not the end: many servers cap pages below the limit asked (and say so
        # in a Warning header, or not); only an empty answer is
        if limit is not None and offset >= limit:
            return


def as_answer(item: dict) -> RawAnswer:
    """A DICOM JSON result as a C-FIND answer would come: encoded (Explicit VR LE, UTF-8)."""
    from pydicom.dataset import Dataset
    from pydicom.uid import ExplicitVRLittleEndian

    from dicomscu.files.codec import encode

    try:
        dataset = Dataset.from_json(item, bulk_data_uri_handler=lambda *_: b"")  # a find needs no bulk data
    except Exception as exc:
        raise OperationFailed(f"a QIDO-RS result is not DICOM JSON ({type(exc).__name__}: {exc})") from None
    if "SpecificCharacterSet" not in dataset:
        dataset.SpecificCharacterSet = "ISO_IR 192"  # JSON text is Unicode
    return RawAnswer(encode(dataset, ExplicitVRLittleEndian), ExplicitVRLittleEndian)


def find(peer: WebPeer, query: Query, options: FindOptions | None = None, *, on_answer: Callable | None = None,
         limit: int | None = None, raw: bool = False) -> FindReport:
    """QIDO-RS `query` on `peer`; each match to `on_answer` (a Dataset, or with `raw` a RawAnswer); as
    :func:`dicomscu.operations.find.find`, `options` or `limit` stop after that many matches."""
    limit = given(options, FindOptions, limit=limit).limit
    started = time.perf_counter()
    report = FindReport(peer, query)  # type: ignore[arg-type]
    with WebService(peer) as service:
        for item in answers(service, query, limit):
            answer = as_answer(item)
            report.matches += 1
            if on_answer is not None:
                on_answer(answer if raw else answer.dataset())
    report.status = _SUCCESS
    report.seconds = time.perf_counter() - started
    return report

