"""``dicomscu serve --http PORT``: the embedded PACS over DICOMweb (PS3.18), on the same index and storage.

Under ``/dicom-web``:

* QIDO-RS: ``GET /studies``, ``/series``, ``/instances`` (also below a study or a series),
  query parameters as keywords or tags, ``includefield``, ``limit`` and ``offset``;
  matching is the C-FIND matching (the same index, the same rules);
* WADO-RS: ``GET /studies/{study}[/series/{series}[/instances/{instance}]]``, a
  ``multipart/related; type="application/dicom"`` response of the stored files, each
  proven whole before it is sent, streamed from disk, each part labelled with its
  transfer syntax.  The Accept header's ``transfer-syntax`` says which: ``*`` as stored;
  none, Explicit VR Little Endian (PS3.18's default); an uncompressed file is re-encoded
  into an uncompressed syntax asked for, a compressed one decompressed into Explicit or
  Implicit VR Little Endian when a decoder for its syntax is installed
  (``dicomscu[compressed]``), else sent only in its own (206 when some instances cannot
  be sent as asked, 406 when none can); a file that cannot be read or decoded cuts the
  answer short (logged), so that no client takes it for the whole resource;
* WADO-RS for viewers (:mod:`dicomscu.server.viewer`): ``.../metadata`` at study, series and instance
  level (DICOM JSON, the pixel data and large values by BulkDataURI) and
  ``/studies/{s}/series/{se}/instances/{i}/frames/{list}``;
* STOW-RS: ``POST /studies``, a multipart request (with a Content-Length or chunked),
  each part stored exactly as a C-STORE's data set is (same checks, same index),
  answered with the Referenced and Failed SOP Sequences (200, 202 or 409).

``/`` is a study browser (:file:`static/`): a page of its own scripts that shows the studies, their series
as thumbnails and an instance as rendered, through the endpoints above only.

Every request for data passes serve's access policy first (:mod:`dicomscu.server.access`): HTTPS with the DIMSE
side's certificate (and its client-certificate check) when serve has TLS, the credentials of
``--http-token-file`` (401 with a ``WWW-Authenticate`` challenge otherwise), ``--read-only`` (STOW-RS 403).

The HTTP server is the standard library's, one thread per connection.  A client has
:data:`HEADER_SECONDS` to send its request line and headers (a TLS handshake
:data:`HANDSHAKE_SECONDS`), then :attr:`_Handler.timeout` per read of its body; a malformed
request is answered 400 with a one-line reason.  A STOW-RS part goes to a temporary file in the
storage past 8 MiB, as a C-STORE data set does; parts larger than ``--max-size`` are refused
without being held whole.
"""

from __future__ import annotations

import gzip
import http.server
import itertools
import json
import logging
import os
import socket
import sys
import threading
import time
import zlib
from typing import Any, Iterator
from urllib.parse import parse_qsl, urlsplit

from dicomscu import uids
from dicomscu.files.instances import SERIES_UID, STUDY_UID
from dicomscu.files.probe import BadFile, DicomFile, file_to_send, probe, valid_uid
from dicomscu.files.sending import payload, syntax_to_send
from dicomscu.files.spool import Spool
from dicomscu.operations.provider import SPILL_OVER
from dicomscu.printable import printable
from dicomscu.query.values import problem
from dicomscu.server.access import REALM
from dicomscu.server.index import LEVELS, UNIQUE, QueryTooLong
from dicomscu.web.wado import MultipartError, MultipartReader, boundary_of

LOGGER = logging.getLogger("dicomscu.server")
ROOT = "/dicom-web"
CHUNK = 256 * 1024
_RESOURCE_LEVELS = {"studies": "STUDY", "series": "SERIES", "instances": "IMAGE"}
#: A client has this long to send its request line and headers (a slow one holds no thread for longer).
HEADER_SECONDS = 10.0
#: ... and this long for a TLS handshake.
HANDSHAKE_SECONDS = 10.0
#: A request body gets this long, then must keep up an average of :data:`BODY_BYTES_PER_SECOND` (a slow
#: link sends a large STOW-RS; a trickle that would hold a thread for hours is cut off).
BODY_GRACE_SECONDS = 30.0
BODY_BYTES_PER_SECOND = 8 * 1024
#: Attributes every QIDO-RS answer carries, by level (PS3.18 Table 10.6.3-3 to -5, the ones the index keeps).
DEFAULT_FIELDS = {
    "STUDY": ("StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
              "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
              "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    "SERIES": ("Modality", "SeriesDescription", "SeriesNumber", "SeriesInstanceUID", "StudyInstanceUID",
               "NumberOfSeriesRelatedInstances"),
    "IMAGE": ("SOPClassUID", "SOPInstanceUID", "InstanceNumber", "SeriesInstanceUID", "StudyInstanceUID",
              "AvailableTransferSyntaxUID", "Rows", "Columns", "BitsAllocated", "NumberOfFrames"),
}
#: What ``includefield=all`` adds: every attribute the index answers at the level and above.
ALL_FIELDS = {
    "STUDY": DEFAULT_FIELDS["STUDY"] + ("SOPClassesInStudy", "NumberOfPatientRelatedStudies"),
    "SERIES": DEFAULT_FIELDS["SERIES"] + DEFAULT_FIELDS["STUDY"],
    "IMAGE": DEFAULT_FIELDS["IMAGE"] + DEFAULT_FIELDS["SERIES"] + DEFAULT_FIELDS["STUDY"],
}
#: STOW-RS answer tags: Referenced/Failed SOP Sequence, Referenced SOP Class/Instance UID, Failure Reason.
_REFERENCED, _FAILED, _CLASS, _INSTANCE, _REASON = "00081199", "00081198", "00081150", "00081155", "00081197"
_RETRIEVE_URL = "00081190"


#: The study browser's files (src/dicomscu/server/static), by URL path.
_PAGES = {"/": ("index.html", "text/html; charset=utf-8"), "/index.html": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"), "/app.css": ("app.css", "text/css; charset=utf-8")}


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class DicomWebServer:
    """DICOMweb for `pacs` on `address` (HTTPS with `ssl_context`): ``start()`` serves in background threads,
    ``stop()`` ends it."""

    def __init__(self, pacs, address: tuple[str, int], ssl_context=None, per_client: int = 32) -> None:
        self.pacs = pacs
        handler = type("Handler", (_Handler,), {"pacs": pacs})
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        server_class = type("Server", (_Server,), {"address_family": family})
        self._server = server_class(address, handler)
        self._server.daemon_threads = True
        self._server.ssl_context = ssl_context
        self._server.per_client = per_client
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "DicomWebServer":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        daemon=True, name="dicomweb")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Server(http.server.ThreadingHTTPServer):
    """The standard library's server, with a failed request logged in one line instead of a traceback on
    stderr: a client that goes away mid-answer is its business, not an error of ours.  With an SSL context
    each connection's handshake is made in its own thread, under a deadline, so that a client that never
    finishes one holds up nobody."""

    ssl_context: Any = None
    #: Connections one client address may hold at once (:meth:`process_request`).
    per_client = 32

    def server_bind(self) -> None:
        self._held: dict[str, int] = {}
        self._held_lock = threading.Lock()
        super().server_bind()

    def process_request(self, request, client_address) -> None:
        """A connection past the client's cap is answered 503 (plain HTTP; a TLS one is closed) from this
        thread without blocking it, and closed: one client cannot take every thread."""
        with self._held_lock:
            held = self._held.get(client_address[0], 0)
            if held < self.per_client:
                self._held[client_address[0]] = held + 1
        if held >= self.per_client:
            LOGGER.warning("DICOMweb %s: connection refused: it already holds %d (--http-connections-per-client)",
                           client_address[0], held)
            if self.ssl_context is None:
                try:
                    request.setblocking(False)
                    request.send(_TOO_MANY)
                except OSError:
                    pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._held_lock:
                left = self._held.pop(client_address[0]) - 1
                if left:
                    self._held[client_address[0]] = left

    def get_request(self):
        connection, address = super().get_request()
        if self.ssl_context is not None:
            connection = self.ssl_context.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, address

    def finish_request(self, request, client_address) -> None:
        if self.ssl_context is not None:
            import ssl

            request.settimeout(HANDSHAKE_SECONDS)
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                LOGGER.warning("DICOMweb %s: TLS handshake failed: %s", client_address[0],
                               getattr(exc, "reason", None) or exc)
                return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            LOGGER.info("DICOMweb %s: the connection ended: %s", client_address[0], exc.strerror or exc)
        else:
            LOGGER.error("DICOMweb %s: the request failed: %s: %s", client_address[0], type(exc).__name__, exc,
                         exc_info=LOGGER.isEnabledFor(logging.DEBUG))


_TOO_MANY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
             b"Connection: close\r\nContent-Length: 58\r\n\r\n"
             b'{"error": "too many connections from this client address"}')


class _Handler(http.server.BaseHTTPRequestHandler):
    pacs: Any = None  # the Pacs served (set on a subclass per server)
    protocol_version = "HTTP/1.1"
    timeout = 30  # a client that stalls mid-request is dropped

    def log_message(self, format: str, *args) -> None:
        # the request line and status only: an Authorization header never reaches a log
        LOGGER.info("DICOMweb %s: %s", self.client_address[0], _printable(format % args))

    # -- deadlines and access --------------------------------------------------------------------------
    def handle_one_request(self) -> None:
        """One request, its line and headers under a deadline (:data:`HEADER_SECONDS`): past it the
        connection is shut, whatever trickle the client keeps up."""
        self._header_timer = threading.Timer(HEADER_SECONDS, self._too_slow)
        self._header_timer.daemon = True
        self._header_timer.start()
        self._head_only = False
        self.wfile = getattr(self, "_real_wfile", self.wfile)  # (a HEAD before, on this connection)
        try:
            super().handle_one_request()
        finally:
            self._header_timer.cancel()

    # -- browsers: CORS, OPTIONS, HEAD --------------------------------------------------------------------
    def end_headers(self) -> None:
        """Every answer says which origin may read it (CORS); a HEAD's answer ends with its headers."""
        headers = getattr(self, "headers", None)  # (none yet when the request line itself is refused)
        origin = headers.get("Origin") if headers is not None else None
        if origin and getattr(self, "command", "") != "OPTIONS" and _origin_allowed(origin, self.pacs.config.http_cors):
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Expose-Headers", "Warning, Content-Type, Content-Length, Location")
            self.send_header("Vary", "Origin")
        super().end_headers()
        if getattr(self, "_head_only", False):
            self._real_wfile, self.wfile = self.wfile, _Discard()  # type: ignore[assignment]

    def do_OPTIONS(self) -> None:
        """The methods of the service, and a CORS preflight's answer for an origin allowed (no credentials
        are asked of a preflight: the request that follows carries them)."""
        self.send_response(204)
        self.send_header("Allow", "GET, HEAD, POST, OPTIONS")
        origin = self.headers.get("Origin")
        if origin and _origin_allowed(origin, self.pacs.config.http_cors):
            self.send_header("Access-Control-Allow-Origin", origin)
            self.send_header("Access-Control-Allow-Methods", "GET, HEAD, POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Authorization, Accept, Content-Type")
            self.send_header("Access-Control-Max-Age", "600")
            self.send_header("Vary", "Origin")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_HEAD(self) -> None:
        """A GET's status and headers, without its body."""
        self._head_only = True
        self.do_GET()

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self._header_timer.cancel()
        return parsed

    def _too_slow(self) -> None:
        LOGGER.warning("DICOMweb %s: no complete request headers within %g s: connection closed",
                       self.client_address[0], HEADER_SECONDS)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _authorize(self, writes: bool = False) -> None:
        """Apply serve's access policy to this request (a 401 or 403 HttpError when it is refused)."""
        policy = self.pacs.config.access
        if policy.credentials and not policy.credentials.allows(self.headers.get("Authorization")):
            raise HttpError(401, "authentication required: a bearer token or user:password this server knows",
                            {"WWW-Authenticate": f'Bearer realm="{REALM}", Basic realm="{REALM}"'})
        if writes and policy.read_only:
            raise HttpError(403, "this server is read-only (--read-only): nothing is stored")

    # -- routing ---------------------------------------------------------------------------------------
    def _route(self) -> tuple[list[str], list[tuple[str, str]]]:
        parts = urlsplit(self.path)
        if not (parts.path == ROOT or parts.path.startswith(ROOT + "/")):
            raise HttpError(404, f"not a DICOMweb resource (the service is under {ROOT})")
        segments = [s for s in parts.path[len(ROOT):].split("/") if s]
        return segments, parse_qsl(parts.query, keep_blank_values=True)

    def do_GET(self) -> None:
        page = _PAGES.get(urlsplit(self.path).path)
        if page is not None:  # the study browser: no data in it (what it shows comes through DICOMweb)
            return self._page(*page)
        try:
            self._authorize()
            segments, query = self._route()
            if segments and segments[-1] in _RESOURCE_LEVELS and len(segments) % 2 == 1:
                self._qido(segments, query)
            elif segments[:1] == ["studies"] and segments[-1:] == ["metadata"] and len(segments) in (3, 5, 7) and \
                    segments[2:3] in ([], ["series"], ["metadata"]) and segments[4:5] in ([], ["instances"], ["metadata"]):
                self._metadata(segments[1:-1:2])
            elif segments[:1] == ["studies"] and len(segments) == 8 and segments[2] == "series" and \
                    segments[4] == "instances" and segments[6] == "frames":
                self._frames(segments[1:6:2], segments[7])
            elif segments[:1] == ["studies"] and len(segments) == 8 and segments[2] == "series" and \
                    segments[4] == "instances" and segments[6] == "bulkdata":
                self._bulkdata(segments[1:6:2], segments[7])
            elif segments[:1] == ["studies"] and segments[-1:] in (["rendered"], ["thumbnail"]) and \
                    _is_image_path(segments[:-1]):
                self._rendered(segments[:-1], query, thumbnail=segments[-1] == "thumbnail")
            elif segments[:1] == ["studies"] and len(segments) in (2, 4, 6) and \
                    segments[2:3] in ([], ["series"]) and segments[4:5] in ([], ["instances"]):
                self._wado(segments[1::2])
            else:
                raise HttpError(404, "no such DICOMweb resource")
        except HttpError as exc:
            self._error(exc.status, str(exc), exc.headers)

    def do_POST(self) -> None:
        try:
            self._authorize(writes=True)
            segments, _ = self._route()
            if segments[:1] != ["studies"] or len(segments) > 2:
                raise HttpError(404, "STOW-RS takes POST /studies")
            if len(segments) == 2:
                _check_uid(segments[1])  # PS3.18 10.5: a study that is no UID is a bad request
            self._stow(segments[1] if len(segments) == 2 else None)
        except HttpError as exc:
            self._error(exc.status, str(exc), exc.headers)

    def _page(self, name: str, content_type: str) -> None:
        from importlib.resources import files

        body = files("dicomscu.server").joinpath("static", name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        # its own scripts and styles only; pictures are fetched (with the token) and shown as blobs
        self.send_header("Content-Security-Policy", "default-src 'self'; img-src 'self' blob:; object-src 'none'")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status >= 400 and self.command == "POST":
            self.close_connection = True  # the body may not have been read: the connection cannot go on
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, document) -> None:
        body = json.dumps(document).encode()
        gzipped = self._gzip()
        if gzipped:
            body = gzip.compress(body, compresslevel=5)
        self.send_response(status)
        self.send_header("Content-Type", "application/dicom+json")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _gzip(self) -> bool:
        """Whether the client takes gzip (JSON shrinks tenfold: what a viewer loading metadata waits for)."""
        return any(coding.split(";")[0].strip().lower() == "gzip"
                   for coding in (self.headers.get("Accept-Encoding") or "").split(","))

    # -- QIDO-RS ---------------------------------------------------------------------------------------
    def _qido(self, segments: list[str], query: list[tuple[str, str]]) -> None:
        from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
        from pydicom.dataset import Dataset

        level = _RESOURCE_LEVELS[segments[-1]]
        identifier = Dataset()
        identifier.QueryRetrieveLevel = level
        for name in DEFAULT_FIELDS[level]:
            setattr(identifier, name, "")
        for uid, keyword in zip(segments[1::2], ("StudyInstanceUID", "SeriesInstanceUID")):
            _check_uid(uid)
            setattr(identifier, keyword, uid)
        paging: dict[str, int] = {}
        fuzzy = False
        for name, value in query:
            if name in ("limit", "offset"):
                if not (value.isascii() and value.isdigit()):
                    raise HttpError(400, f"{name}={value!r} is not a number")
                paging[name] = int(value)
                continue
            if name == "fuzzymatching":
                fuzzy = value.strip().lower() == "true"
                continue
            if name == "includefield":
                for field in value.split(","):
                    named = ALL_FIELDS[level] if field.strip() == "all" else [
                        _keyword(field.strip(), keyword_for_tag, tag_for_keyword)]
                    for included in named:
                        if included is None:
                            raise HttpError(400, f"includefield: unknown attribute {_printable(field.strip())!r}")
                        if included not in identifier:
                            setattr(identifier, included, "")
                continue
            attribute = _keyword(name, keyword_for_tag, tag_for_keyword)
            if attribute is None:
                raise HttpError(400, f"unknown attribute {_printable(name)!r}")
            if dictionary_VR(attribute) == "SQ":
                raise HttpError(400, f"{attribute} is a sequence: give its attributes (as Sequence.Attribute), "
                                     "not the sequence itself")
            value = value.replace(",", "\\")  # PS3.18 8.3.4.1: values separated by commas are a list
            reason = problem(dictionary_VR(attribute).split(" or ")[0], value)
            if reason is not None:
                raise HttpError(400, f"{attribute}={_printable(value)!r}: the value {reason}")
            try:
                setattr(identifier, attribute, value)
            except (ValueError, TypeError, OverflowError) as exc:
                raise HttpError(400, f"{attribute}={_printable(value)!r}: {exc}") from None
        start = paging.get("offset", 0)
        stop = start + paging["limit"] if "limit" in paging else None
        answers = itertools.islice(self.pacs.query(identifier), start, stop)  # past the page: never read
        try:
            first = next(answers, None)
        except QueryTooLong:
            raise HttpError(503, "the query ran past its deadline") from None
        if first is None:
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        if fuzzy:  # PS3.18 8.3.4.4 (Table 8.3.4-1): said, not silently ignored
            self.send_header("Warning", '299 dicomscu "fuzzymatching is not supported: names were matched as given"')
        squeeze = zlib.compressobj(5, wbits=31) if self._gzip() else None  # gzip, chunk by chunk
        if squeeze is not None:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Vary", "Accept-Encoding")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        base = self._base()
        pending = [b"[", _qido_json(first, base)]

        def send(data: bytes, last: bool = False) -> None:
            if squeeze is not None:
                data = squeeze.compress(data) + (squeeze.flush() if last else b"")
            if data:
                self._chunk(data)

        try:
            for match in answers:  # streamed: the answer is never held whole
                pending += [b",", _qido_json(match, base)]
                if len(pending) >= 256:
                    send(b"".join(pending))
                    pending = []
        except QueryTooLong:  # (logged) cut short, without its last chunk: no client takes it for whole
            LOGGER.warning("DICOMweb %s: QIDO-RS answer cut short: the query ran past its deadline",
                           self.client_address[0])
            self.close_connection = True
            return
        send(b"".join(pending) + b"]", last=True)
        self.wfile.write(b"0\r\n\r\n")

    # -- WADO-RS ---------------------------------------------------------------------------------------
    def _wado(self, uids: list[str]) -> None:
        if not _accepts_multipart_dicom(self.headers.get("Accept")):
            raise HttpError(406, "a study, series or instance is retrieved as multipart/related; "
                                 'type="application/dicom" (its DICOM JSON is at .../metadata)')
        rows = self._rows(uids)
        accepted = accepted_syntaxes(self.headers.get("Accept"))
        plan = [(row["path"], syntax_to_send(row["transfer_syntax"], accepted)) for row in rows]
        sendable = [(path, syntax) for path, syntax in plan if syntax is not None]
        if not sendable:
            raise HttpError(406, f"the {len(rows)} instance(s) are stored compressed "
                                 f"({', '.join(sorted({row['transfer_syntax'] for row in rows}))}) and no "
                                 f"decoder for that is installed here: ask for transfer-syntax=* or one of those")
        boundary = os.urandom(12).hex()
        self.send_response(200 if len(sendable) == len(plan) else 206)
        self.send_header("Content-Type", f'multipart/related; type="application/dicom"; boundary={boundary}')
        if len(sendable) < len(plan):
            self.send_header("Warning", f"299 dicomscu \"{len(plan) - len(sendable)} instance(s) stored "
                                        "compressed are left out: not in a transfer syntax asked for, and no "
                                        "decoder for theirs is installed here\"")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for path, syntax in sendable:
            data = self._instance(path, syntax)
            if data is None:  # (logged) the answer is cut short: no client takes it for the whole resource
                self.close_connection = True
                return
            self._chunk(f"--{boundary}\r\nContent-Type: application/dicom; transfer-syntax="
                        f"{syntax}\r\n\r\n".encode())
            for start in range(0, len(data), CHUNK):
                self._chunk(data[start:start + CHUNK])
            self._chunk(b"\r\n")
        self._chunk(f"--{boundary}--\r\n".encode())
        self.wfile.write(b"0\r\n\r\n")

    def _rows(self, uids: list[str]) -> list[dict]:
        """The index rows of the study, series or instance that `uids` name (404 when none)."""
        from pydicom.dataset import Dataset

        for uid in uids:
            _check_uid(uid)
        level = LEVELS[len(uids)]
        identifier = Dataset()
        identifier.QueryRetrieveLevel = level
        for uid, keyword in zip(uids, ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")):
            setattr(identifier, keyword, uid)
        _, found = self.pacs.matches(identifier)
        if found is None:
            raise HttpError(503, "the query ran past its deadline")
        rows = [row for match in found for row in match.instances()]
        if not rows:
            raise HttpError(404, f"no such {UNIQUE[level]} {uids[-1]}")
        return rows

    def _metadata(self, uids: list[str]) -> None:
        """WADO-RS metadata (PS3.18 10.4.1.1.2): each instance as DICOM JSON, its large values as BulkDataURIs."""
        from dicomscu.server.viewer import instance_metadata, metadata_json

        documents = []
        for row in self._rows(uids):
            url = (f"{self._base()}/studies/{row['study_uid']}/series/{row['series_uid']}/instances/"
                   f"{row['sop_uid']}")
            try:
                documents.append(instance_metadata(self.pacs.resolve(row["path"]), url))
            except Exception as exc:  # a file gone or broken: named in the log, left out of the answer
                LOGGER.error("metadata: cannot read %s: %s: %s", self.pacs.resolve(row["path"]), type(exc).__name__,
                             exc)
                raise HttpError(500, f"instance {row['sop_uid']} cannot be read (named in serve's log)") from None
        self._json(200, documents)

    def _frames(self, uids: list[str], numbers_text: str) -> None:
        """WADO-RS frames (PS3.18 10.4.1.1.3): a multipart answer of the frames asked for (1-based)."""
        from dicomscu.server.viewer import ViewerError, frames

        try:
            numbers = [int(number) for number in numbers_text.split(",")]
        except ValueError:
            raise HttpError(400, f"{_printable(numbers_text[:40])!r} is not a list of frame numbers") from None
        (row,) = self._rows(uids)
        stored = self.pacs.read_instance(row["path"])
        if stored is None:
            raise HttpError(500, f"instance {row['sop_uid']} cannot be read (named in serve's log)")
        info, data = stored
        try:
            parts = frames(data, info.dataset_offset, info.transfer_syntax, numbers,
                           accepted_syntaxes(self.headers.get("Accept")))
        except ViewerError as exc:
            raise HttpError(exc.status, str(exc)) from None
        self._octets([(part.content_type, part.data) for part in parts])

    def _bulkdata(self, uids: list[str], tag_text: str) -> None:
        """A BulkDataURI of the metadata (PS3.18 10.4.1.1.5): the value, one application/octet-stream part."""
        from dicomscu.server.viewer import ViewerError, bulkdata

        if not (len(tag_text) == 8 and all(c in "0123456789abcdefABCDEF" for c in tag_text)):
            raise HttpError(400, f"{_printable(tag_text[:20])!r} is not a tag (eight hex digits)")
        (row,) = self._rows(uids)
        try:
            value = bulkdata(self.pacs.resolve(row["path"]), int(tag_text, 16), row["transfer_syntax"])
        except ViewerError as exc:
            raise HttpError(exc.status, str(exc)) from None
        self._octets([("application/octet-stream", value)])

    def _octets(self, parts: list[tuple[str, bytes]]) -> None:
        """A ``multipart/related; type="application/octet-stream"`` answer of (content type, bytes) parts."""
        boundary = os.urandom(12).hex()
        body = b"".join(f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n"
                        for content_type, data in parts) + f"--{boundary}--\r\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", f'multipart/related; type="application/octet-stream"; boundary={boundary}')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _rendered(self, segments: list[str], query: list[tuple[str, str]], thumbnail: bool) -> None:
        """A picture (PS3.18 10.4.1.1.4/10.4.1.1.5): of a frame, of an instance (its first frame), of a series
        or study (a representative: its first instance's first frame); a thumbnail is a small one."""
        from dicomscu.server.viewer import ViewerError, render, rendered_type

        frame = 1
        if len(segments) == 8:  # .../instances/{i}/frames/{n}
            if not segments[7].isdigit():
                raise HttpError(400, "a picture is of one frame: frames/{number}")
            frame, segments = int(segments[7]), segments[:6]
        try:
            media_type = rendered_type(self.headers.get("Accept"))
            row = min(self._rows(segments[1::2]), key=lambda row: (row["series_number"].zfill(8),
                                                                   row["instance_number"].zfill(8), row["sop_uid"]))
            stored = self.pacs.read_instance(row["path"])
            if stored is None:
                raise HttpError(500, f"instance {row['sop_uid']} cannot be read (named in serve's log)")
            picture = render(stored[1], frame, media_type, dict(query).get("window"), thumbnail=thumbnail)
        except ViewerError as exc:
            raise HttpError(exc.status, str(exc)) from None
        self.send_response(200)
        self.send_header("Content-Type", media_type)
        self.send_header("Content-Length", str(len(picture)))
        self.end_headers()
        self.wfile.write(picture)

    def _instance(self, path: str, syntax: str) -> bytes | None:
        """A stored file as a whole file in `syntax`; None (logged, naming the file) when it cannot be read
        or converted."""
        stored = self.pacs.read_instance(path)
        if stored is None:
            return None
        info, data = stored
        if syntax == info.transfer_syntax:
            return bytes(file_to_send(data, info))  # odd-length pixel data fragments padded (PS3.5 A.4)
        try:
            return _reencoded(info, data, syntax)
        except Exception as exc:  # pixel data its decoder refuses
            LOGGER.error("not sent: %s: cannot convert it from %s to %s: %s: %s", self.pacs.resolve(path),
                         info.transfer_syntax, syntax, type(exc).__name__, exc)
            return None

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")

    # -- STOW-RS ---------------------------------------------------------------------------------------
    def _stow(self, study: str | None) -> None:
        content_type = self.headers.get("Content-Type", "")
        if not content_type.lower().startswith("multipart/related"):
            raise HttpError(415, "STOW-RS takes multipart/related; type=\"application/dicom\"")
        try:
            reader = MultipartReader(boundary_of(content_type))
        except MultipartError as exc:
            raise HttpError(400, str(exc)) from None
        referenced: list[dict] = []
        failed: list[dict] = []
        part: _Part | None = None
        try:
            for chunk in self._body():
                for kind, value in reader.feed(chunk):
                    if kind == "part":
                        if part is not None:
                            self._store_part(part, referenced, failed, study)
                        part = _Part(self.pacs.storage, self.pacs.config.max_size)
                    elif kind == "data" and part is not None:
                        part.write(value)  # type: ignore[arg-type]
                    elif kind == "end" and part is not None:
                        self._store_part(part, referenced, failed, study)
                        part = None
        except MultipartError as exc:
            raise HttpError(400, f"not a valid multipart body: {exc}") from None
        finally:
            if part is not None:  # the body broke off inside a part: nothing of it is kept
                part.discard()
        if not reader.done:
            raise HttpError(400, "the multipart body ended before its closing boundary")
        document: dict = {}
        studies = {url.split("/series/")[0] for item in referenced for url in item[_RETRIEVE_URL]["Value"]}
        if study is not None or len(studies) == 1:  # PS3.18 10.5.3: the study the instances were stored in
            document[_RETRIEVE_URL] = {"vr": "UR", "Value": [f"{self._base()}/studies/{study}" if study
                                                            else studies.pop()]}
        if referenced:
            document[_REFERENCED] = {"vr": "SQ", "Value": referenced}
        if failed:
            document[_FAILED] = {"vr": "SQ", "Value": failed}
        self._json(200 if not failed else 202 if referenced else 409, document)

    def _body(self) -> Iterator[bytes]:
        """The request body in chunks, from a Content-Length or chunked transfer coding."""
        self._body_started, self._body_received = time.monotonic(), 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise HttpError(400, "a malformed chunk size") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        continue  # trailers
                    return
                yield from self._read(size, "the body ended inside a chunk")
                self.rfile.readline(8)
        else:
            length = (self.headers.get("Content-Length") or "0").strip()
            if not (length.isascii() and length.isdigit()):
                raise HttpError(400, f"Content-Length {_printable(length)!r} is not a number of bytes")
            yield from self._read(int(length), "the body ended before its Content-Length")

    def _read(self, count: int, short: str) -> Iterator[bytes]:
        """`count` bytes of the request, in chunks; a 400 saying `short` if the client stops sending."""
        while count:
            data = self.rfile.read1(min(count, CHUNK))  # what has come: the pace is checked as it comes
            if not data:
                raise HttpError(400, short)
            count -= len(data)
            self._body_received += len(data)
            elapsed = time.monotonic() - self._body_started
            if elapsed > BODY_GRACE_SECONDS and self._body_received < elapsed * BODY_BYTES_PER_SECOND:
                raise HttpError(408, f"the body arrives too slowly ({self._body_received} bytes in {elapsed:.0f} s; "
                                     f"after {BODY_GRACE_SECONDS:g} s at least {BODY_BYTES_PER_SECOND} bytes/s)")
            yield data

    def _store_part(self, part: "_Part", referenced: list, failed: list, study: str | None) -> None:
        """Store one part, a whole DICOM file, as a C-STORE's data set is stored; its answer item goes to
        `referenced` (with its RetrieveURL) or `failed` (with its UIDs, when it has them, and the reason).
        Posted to a study, an instance of another study is refused (PS3.18 10.5, 0xA900) and not stored."""
        try:
            if part.too_big or part.error is not None:
                if part.error is not None:
                    LOGGER.error("STOW-RS part not stored: %s", part.error)
                failed.append({_REASON: {"vr": "US", "Value": [0xA700]}})
                return
            try:
                info, data = part.instance()
            except BadFile as exc:
                LOGGER.warning("STOW-RS part refused: %s", exc)
                failed.append({_REASON: {"vr": "US", "Value": [0xC000]}})
                return
            item = {_CLASS: {"vr": "UI", "Value": [info.sop_class]},
                    _INSTANCE: {"vr": "UI", "Value": [info.sop_instance]}}
            its_study, its_series = info.values.get(STUDY_UID, ""), info.values.get(SERIES_UID, "")
            if study is not None and its_study != study:
                LOGGER.warning("STOW-RS to study %s refused %s: it belongs to study %s", study, info.sop_instance,
                               _printable(its_study))
                if isinstance(data, Spool):
                    data.discard()
                failed.append({**item, _REASON: {"vr": "US", "Value": [0xA900]}})
                return
            status = self.pacs.store(info.sop_class, info.sop_instance, data, info.transfer_syntax)
        finally:
            part.discard()
        if status == 0x0000:
            url = f"{self._base()}/studies/{its_study}/series/{its_series}/instances/{info.sop_instance}"
            referenced.append({**item, _RETRIEVE_URL: {"vr": "UR", "Value": [url]}})
        else:
            failed.append({**item, _REASON: {"vr": "US", "Value": [status]}})

    def _base(self) -> str:
        """This service's URL as the client reached it (for RetrieveURLs)."""
        address = self.server.server_address
        ours = f"{address[0]}:{address[1]}"  # type: ignore[index]
        host = self.headers.get("Host") or ours
        if not all(c.isalnum() or c in ".-:[]_" for c in host):
            host = ours  # (a forged Host)
        scheme = "https" if getattr(self.server, "ssl_context", None) is not None else "http"
        return f"{scheme}://{host}{ROOT}"


class _Part:
    """One STOW-RS part as it arrives: in memory up to :data:`~dicomscu.operations.provider.SPILL_OVER`
    (as a C-STORE data set is), past that in a temporary file in the storage, so that a part of any size
    costs no more memory than that; past `limit` (``--max-size``) nothing more of it is kept."""

    def __init__(self, storage: str, limit: int) -> None:
        self._storage = storage
        self._limit = limit
        self._memory = bytearray()
        self._spool: Spool | None = None
        self.size = 0
        self.too_big = False

    @property
    def error(self) -> OSError | None:
        return self._spool.error if self._spool is not None else None

    def write(self, data: bytes | memoryview) -> None:
        if self.too_big:
            return
        self.size += len(data)
        if self.size > self._limit:
            self.too_big = True
            self.discard()
        elif self._spool is not None:
            self._spool.write(memoryview(data))
        elif self.size <= SPILL_OVER:
            self._memory += data
        else:
            self._spool = Spool(self._storage, tag="stow")
            self._spool.write(memoryview(self._memory))
            self._spool.write(memoryview(data))
            self._memory = bytearray()

    def instance(self) -> tuple[DicomFile, "bytes | memoryview | Spool"]:
        """(what the file is, its data set: bytes, or for a spilled part a spool holding the data set
        under a file meta made from it, as a C-STORE's); raises BadFile when the part is no whole file."""
        if self._spool is None:
            info = probe(self._memory, read=(STUDY_UID, SERIES_UID))
            return info, memoryview(self._memory)[info.dataset_offset:]
        with self._spool.mapped() as whole:  # proving it whole reads the element headers only
            info = probe(whole, read=(STUDY_UID, SERIES_UID))
        instance = Spool.for_instance(self._storage, info.sop_class, info.sop_instance, info.transfer_syntax)
        with open(self._spool.path, "rb") as source:  # copied by reads: file pages are no part of our memory
            source.seek(info.dataset_offset)
            while block := source.read(CHUNK * 4):
                instance.write(memoryview(block))
        return info, instance

    def discard(self) -> None:
        self._memory = bytearray()
        if self._spool is not None:
            self._spool.discard()


class _Discard:
    """Where a HEAD's body goes."""

    def write(self, data) -> int:
        return len(data)

    def flush(self) -> None:
        pass


def _origin_allowed(origin: str, allowed: tuple[str, ...]) -> bool:
    """Whether a browser page from `origin` may read the answers: one of `allowed` (``--http-cors``; ``*``: any),
    or, when none is given, a page served from this machine (localhost, 127.0.0.1, [::1], any port)."""
    if allowed:
        return "*" in allowed or origin in allowed
    host = urlsplit(origin).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1")


def _qido_json(match, base: str) -> bytes:
    """One QIDO-RS answer as DICOM JSON (PS3.18 F.2), without the C-FIND bookkeeping keys, with its
    RetrieveURL (Tables 10.6.3-3 to -5)."""
    answer = match.identifier
    for keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
        if keyword in answer:
            delattr(answer, keyword)
    row = match.row
    url = f"{base}/studies/{row['study_uid']}"
    if match.level in ("SERIES", "IMAGE"):
        url += f"/series/{row['series_uid']}"
    if match.level == "IMAGE":
        url += f"/instances/{row['sop_uid']}"
    document = answer.to_json_dict()
    document[_RETRIEVE_URL] = {"vr": "UR", "Value": [url]}
    return json.dumps(document).encode()


def _is_image_path(segments: list[str]) -> bool:
    """studies/{s}[/series/{se}[/instances/{i}[/frames/{n}]]]: what a picture can be asked of."""
    return len(segments) in (2, 4, 6, 8) and segments[2:3] in ([], ["series"]) and \
        segments[4:5] in ([], ["instances"]) and segments[6:7] in ([], ["frames"])


def _accepts_multipart_dicom(accept: str | None) -> bool:
    """Whether a retrieval's Accept header takes ``multipart/related; type="application/dicom"`` (PS3.18 8.7:
    no header, ``*/*`` and ``multipart/*`` do; ``application/dicom+json`` or ``text/html`` do not)."""
    if not (accept or "").strip():
        return True
    for media_range in accept.split(","):  # type: ignore[union-attr]
        kind, *parameters = [part.strip() for part in media_range.split(";")]
        named = dict((name.strip().lower(), value.strip().strip('"').lower())
                     for name, _, value in (parameter.partition("=") for parameter in parameters))
        if kind in ("*/*", "multipart/*") or (kind == "multipart/related"
                                                and named.get("type", "application/dicom") == "application/dicom"):
            return True
    return False


def accepted_syntaxes(accept: str | None) -> list[str] | None:
    """The transfer syntaxes a WADO-RS request's Accept header allows for application/dicom parts, in its
    order; None for any (``transfer-syntax=*``).  No transfer-syntax parameter: Explicit VR Little Endian,
    PS3.18's default."""
    syntaxes: list[str] = []
    for media_range in (accept or "").split(","):
        parameters = dict((name.strip().lower(), value.strip().strip('"'))
                          for name, _, value in (part.partition("=") for part in media_range.split(";")[1:]))
        syntax = parameters.get("transfer-syntax")
        if syntax == "*":
            return None
        if syntax:
            syntaxes.append(syntax)
    return syntaxes or [uids.EXPLICIT_VR_LE]


def _reencoded(info, data: bytes, syntax: str) -> bytes:
    """A stored file as a whole file in another, uncompressed `syntax` (its file meta says so)."""
    from dicomscu.files.instances import file_header

    return file_header(info.sop_class, info.sop_instance, syntax) + bytes(payload(data, info, syntax))


def _keyword(name: str, keyword_for_tag, tag_for_keyword) -> str | None:
    """A query parameter's attribute keyword: given as a keyword, or as eight hex digits."""
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        return keyword_for_tag(int(name, 16)) or None
    return name if tag_for_keyword(name) is not None else None


def _check_uid(uid: str) -> None:
    if not valid_uid(uid):
        raise HttpError(400, f"{_printable(uid[:70])!r} is not a UID")


def _printable(text: str) -> str:
    """`text` with control characters escaped, so that a request cannot forge a log line."""
    return printable(text)
