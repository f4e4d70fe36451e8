"""The DICOMweb client against scripted servers that page short, ignore offset or ask to wait an hour: no
search is ever taken for complete when it is not, and no wait outlives --timeout."""

from __future__ import annotations

import http.server
import json
import threading
import time
from urllib.parse import parse_qsl, urlsplit

import pytest

from conftest import run_dicomscu
from peers import free_port

STUDIES = [{"0020000D": {"vr": "UI", "Value": [f"1.2.826.0.1.3680043.10.1137.77.{n}"]},
            "00100020": {"vr": "LO", "Value": [f"PID{n:04d}"]}} for n in range(1100)]


class Scripted(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    waited: set = set()

    def log_message(self, format, *args) -> None:
        return

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        kind = parts.path.strip("/").split("/")[0]
        fields = dict(parse_qsl(parts.query))
        start, size = int(fields.get("offset", 0)), int(fields.get("limit", 1000))
        headers = {}
        if kind == "capped":  # at most 100 a page, whatever the limit asked, and it says so
            if size > 100:
                headers["Warning"] = '299 scripted "the limit was capped at 100"'
            size = min(size, 100)
        elif kind == "nooffset":  # offset ignored: the first page again and again
            start = 0
        elif kind == "wait" and kind not in self.waited:
            self.waited.add(kind)
            return self._answer(503, b"busy", {"Retry-After": "3600"})
        page = STUDIES[start:start + size]
        if not page:
            return self._answer(204, b"", headers)
        self._answer(200, json.dumps(page).encode(), headers)

    def _answer(self, status: int, body: bytes, headers: dict) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def scripted():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Scripted)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_server_that_pages_short_gives_every_answer(scripted):
    result = run_dicomscu("--find", "--study", scripted + "/capped", "-k", "PatientID", "--format", "json")
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert len(answers) == 1100  # not the first 100
    assert len({a["0020000D"]["Value"][0] for a in answers}) == 1100  # each once


def test_a_server_that_ignores_offset_is_an_error_not_a_short_answer(scripted):
    result = run_dicomscu("--find", "--study", scripted + "/nooffset", "-k", "PatientID", "--format", "json",
                          timeout=60)
    assert result.returncode == 1, result.stderr
    assert "ignores offset" in result.stderr and "incomplete" in result.stderr
    assert "Traceback" not in result.stderr


def test_retry_after_never_outlives_the_timeout(scripted):
    started = time.monotonic()
    result = run_dicomscu("--find", "--study", scripted + "/wait", "-k", "PatientID", "--timeout", "2",
                          "--format", "json", timeout=120)
    assert time.monotonic() - started < 20, "Retry-After: 3600 was honoured whole"
    assert result.returncode == 0 and len(json.loads(result.stdout)) == 1100, result.stderr


def test_a_token_on_the_command_line_is_refused_without_being_repeated():
    """`--token SECRET` is no abbreviation of --token-file (which would print the secret as a file name that
    cannot be read): it is refused, pointing to --token-file and DICOMSCU_TOKEN, and the secret is not shown."""
    from conftest import run_inprocess

    for argv in (["--token", "tok-secret-123"], ["--token=tok-secret-123"]):
        result = run_inprocess("--find", "https://pacs.example.org/dicom-web", *argv)
        assert result.returncode == 2 and "--token-file" in result.stderr and "DICOMSCU_TOKEN" in result.stderr
        assert "tok-secret-123" not in result.stdout + result.stderr


class StowScripted(http.server.BaseHTTPRequestHandler):
    """STOW-RS: `/busy` answers 503 (Retry-After: 0) to the first POST, `/moved` redirects it (307) to
    `/busy`; each POST body that arrives is kept."""

    protocol_version = "HTTP/1.1"
    bodies: list = []
    busy_once: set = set()

    def log_message(self, format, *args) -> None:
        return

    def do_POST(self) -> None:
        body = self._body()
        path = urlsplit(self.path).path
        if path.startswith("/moved"):
            return self._answer(307, b"", {"Location": "/busy/studies"})
        if path.startswith("/busy") and "busy" not in self.busy_once:
            self.busy_once.add("busy")
            return self._answer(503, b"busy", {"Retry-After": "0"})
        self.bodies.append(body)  # (the answer names the one instance the test sends)
        answer = {"00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [self.server.uid]}}]}}
        self._answer(200, json.dumps(answer).encode(), {"Content-Type": "application/dicom+json"})

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, body: bytes, headers: dict) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("where", ["busy", "moved"])
def test_a_stow_retried_or_redirected_sends_the_whole_body_again(tmp_path, dataset_dir, where):
    """A 503 (then 200) and a 307 redirect: the request goes again with every part, and the file is
    stored once, not failed by an empty retry."""
    import pydicom

    path = sorted((dataset_dir / "small").iterdir())[0]
    StowScripted.bodies, StowScripted.busy_once = [], set()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), StowScripted)
    server.uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_dicomscu("--store", f"http://127.0.0.1:{server.server_address[1]}/{where}", str(path),
                              "--timeout", "10")
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 of 1 file(s) stored" in result.stdout, result.stdout
    (body,) = StowScripted.bodies
    assert path.read_bytes() in body


class WadoTwice(http.server.BaseHTTPRequestHandler):
    """WADO-RS of a study: the same instance twice in one multipart answer."""

    protocol_version = "HTTP/1.1"
    part: bytes = b""

    def log_message(self, format, *args) -> None:
        return

    def do_GET(self) -> None:
        boundary = "twice"
        one = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + self.part + b"\r\n"
        body = one + one + f"--{boundary}--\r\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", f'multipart/related; type="application/dicom"; boundary={boundary}')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_an_instance_sent_twice_is_written_and_counted_once(tmp_path, dataset_dir):
    import pydicom

    path = sorted((dataset_dir / "small").iterdir())[0]
    study = pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID
    WadoTwice.part = path.read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), WadoTwice)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = run_dicomscu("--get", f"http://127.0.0.1:{server.server_address[1]}/dicom-web", "-k",
                              f"StudyInstanceUID={study}", "-o", str(tmp_path / "out"), "--format", "json")
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["written"] == 1 and document["completed"] == 1, document
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 1
