"""DICOMweb with the same command line: Orthanc's DICOMweb plugin (Debian orthanc-dicomweb) as the real peer,
and a misbehaving HTTP server for what real ones do on bad days."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import pytest

from conftest import dataset_digests, run_dicomscu, run_inprocess
from peers import Orthanc, free_port

pytestmark = pytest.mark.skipif(not Path(Orthanc.DICOMWEB_PLUGIN).exists(),
                                reason="Debian's orthanc-dicomweb plugin is not installed")


@pytest.fixture(scope="module")
def web_orthanc(tmp_path_factory):
    peer = Orthanc(tmp_path_factory.mktemp("orthanc-web"), dicomweb=True)
    yield peer
    peer.close()


@pytest.fixture(scope="module")
def files_200(tmp_path_factory) -> Path:
    """200 files: 20 CT (Explicit VR) and 180 secondary captures (Implicit VR), 4 patients."""
    from dicomscu.sample import write_bench_set

    return write_bench_set(tmp_path_factory.mktemp("files200"), big=20, small=180, patients=4)


def test_stow_qido_wado_round_trip(web_orthanc, files_200, tmp_path):
    """STOW 200 files, QIDO them as a DIMSE find on the same Orthanc sees them, WADO them back unchanged."""
    dataset_dir = files_200
    web_orthanc.clear()
    url = web_orthanc.dicomweb_url
    stored = run_dicomscu("--store", "-r", url, str(dataset_dir), "--format", "json", "-j", "2")
    document = json.loads(stored.stdout)
    originals = sorted(dataset_dir.rglob("*.dcm"))
    assert stored.returncode == 0 and document["summary"]["stored"] == len(originals), stored.stderr
    assert web_orthanc.instance_uids() == set(dataset_digests(originals))

    def study_uids(*peer: str) -> set[str]:
        result = run_dicomscu("--find", "--study", "--studyroot", *peer, "-k", "PatientID", "--format", "json")
        assert result.returncode == 0, result.stderr
        return {answer["0020000D"]["Value"][0] for answer in json.loads(result.stdout)}

    import pydicom

    headers = [pydicom.dcmread(path, stop_before_pixels=True) for path in originals]
    dimse = ("127.0.0.1", str(web_orthanc.dicom_port), "--call", web_orthanc.aetitle)
    assert study_uids(url) == study_uids(*dimse) == {h.StudyInstanceUID for h in headers}
    ct_series = {h.SeriesInstanceUID for h in headers if h.Modality == "CT"}
    series = run_dicomscu("--find", "--series", "--studyroot", url, "-k", "Modality=CT", "--format", "csv")
    assert series.returncode == 0 and series.stdout.count("\n") == 1 + len(ct_series), series.stdout

    out = tmp_path / "out"
    got = run_dicomscu("--find", "--study", "--studyroot", url, "-k", "PatientID", "--then", "get", "-o", str(out),
                       "--layout", "hierarchical", "--accept-all-syntaxes")  # transfer-syntax=*: as stored
    assert got.returncode == 0, got.stderr
    assert dataset_digests(out.rglob("*.dcm")) == dataset_digests(originals)  # every data set, byte for byte
    assert not list(out.rglob("*.part"))

    echo = run_inprocess(url, "--format", "json")
    assert echo.returncode == 0 and json.loads(echo.stdout)["status"]["category"] == "success"
    moved = run_inprocess("--move", "--study", url, "-k", "StudyInstanceUID=1.2.3")
    assert moved.returncode == 2 and "C-MOVE has no DICOMweb counterpart" in moved.stderr


def test_store_journal_and_failures_per_instance(web_orthanc, dataset_dir, tmp_path):
    web_orthanc.clear()
    url = web_orthanc.dicomweb_url
    journal = tmp_path / "journal.sqlite"
    not_dicom = tmp_path / "notes.txt"
    not_dicom.write_text("not an image")
    first = run_dicomscu("--store", url, str(dataset_dir / "small"), str(not_dicom), "--journal", str(journal))
    assert first.returncode == 1 and "60 of 61 file(s) stored" in first.stdout and "notes.txt" in first.stderr
    again = run_dicomscu("--store", url, str(dataset_dir / "small"), "--journal", str(journal), "-V")
    assert again.returncode == 0 and "60 already stored (journal)" in again.stdout


class Misbehaving(http.server.BaseHTTPRequestHandler):
    """Paths name the misbehaviour: /html, /auth, /busy, /slow, /trunc, /badboundary."""

    part = b""  # a whole DICOM file, set by the fixture
    busy_once: set = set()

    def log_message(self, *args) -> None:  # quiet
        return

    def do_GET(self) -> None:
        kind = self.path.split("/")[1]
        if kind == "ups" and self.path.startswith("/ups/workitems?"):
            self._workitems()
        elif kind == "html":
            self._answer(500, b"<html><head><style>p{}</style></head><body><h1>Internal Error</h1>"
                              b"<p>the database exploded</p></body></html>", "text/html")
        elif kind == "auth":
            self._answer(401, b"", "text/plain", {"WWW-Authenticate": "Bearer"})
        elif kind == "busy" and kind not in self.busy_once:
            self.busy_once.add(kind)
            self._answer(503, b"busy", "text/plain", {"Retry-After": "1"})
        elif kind == "busy":
            self._answer(200, b"[]", "application/dicom+json")
        elif kind == "slow":
            time.sleep(8)
            self._answer(200, b"[]", "application/dicom+json")
        elif kind in ("trunc", "badboundary"):
            self.send_response(200)
            self.send_header("Content-Type", 'multipart/related; type="application/dicom"; boundary=GOOD')
            self.send_header("Connection", "close")
            self.end_headers()
            boundary = b"GOOD" if kind == "trunc" else b"OTHER"
            whole = b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + self.part + b"\r\n"
            cut = b"--" + boundary + b"\r\nContent-Type: application/dicom\r\n\r\n" + self.part[:len(self.part) // 2]
            self.wfile.write(whole + cut)  # and no closing boundary: the connection closes
            self.close_connection = True
        else:
            self._answer(404, b"no such thing", "text/plain")

    #: UPS-RS search (PS3.18 11.9): the Unified Procedure Steps this server holds, and the queries it got.
    workitems = [
        {"00080018": {"vr": "UI", "Value": [f"1.2.826.0.1.3680043.10.1137.99.{n}"]},
         "00100010": {"vr": "PN", "Value": [{"Alphabetic": name}]},
         "00100020": {"vr": "LO", "Value": [f"PID{n}"]},
         "00741000": {"vr": "CS", "Value": ["SCHEDULED"]},
         "00404005": {"vr": "DT", "Value": [f"2026112{n}093000"]},
         "00741204": {"vr": "LO", "Value": [f"CT chest {n}"]},
         "00404025": {"vr": "SQ", "Value": [{"00080100": {"vr": "SH", "Value": ["CT01"]}}]}}
        for n, name in enumerate(["Doe^Jane", "Doe^John", "Roe^Ann"], start=1)]
    queries: list = []

    def _workitems(self) -> None:
        from urllib.parse import parse_qsl, urlsplit

        query = parse_qsl(urlsplit(self.path).query, keep_blank_values=True)
        self.queries.append(query)
        fields = dict(query)
        start, size = int(fields.get("offset", 0)), int(fields.get("limit", 100))
        wanted = [item for item in self.workitems if fields.get("PatientName", "*").rstrip("*") in
                  item["00100010"]["Value"][0]["Alphabetic"]]
        page = wanted[start:start + size]
        if page:
            self._answer(200, json.dumps(page).encode(), "application/dicom+json")
        else:
            self._answer(204, b"", "application/dicom+json")

    def _answer(self, status: int, body: bytes, kind: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def misbehaving(dataset_dir):
    Misbehaving.part = sorted((dataset_dir / "small").iterdir())[0].read_bytes()
    class Quiet(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:  # a client that gave up: expected here
            return

    server = Quiet(("127.0.0.1", free_port()), Misbehaving)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("path, args, code, message", [
    ("/html", ["--find", "--study"], 1, "HTTP 500 Internal Server Error: Internal Error the database exploded"),
    ("/auth", [], 6, "HTTP 401"),
    ("/slow", ["--timeout", "2"], 5, "read timeout"),
    ("/trunc", ["--get", "--study", "-k", "StudyInstanceUID=1.2.3"], 1, "ended before its closing boundary"),
    ("/badboundary", ["--get", "--study", "-k", "StudyInstanceUID=1.2.3"], 1, "ended before its closing boundary"),
])
def test_bad_servers_get_one_clear_line_no_partial_file_no_hang(misbehaving, tmp_path, path, args, code, message):
    out = tmp_path / "out"
    started = time.monotonic()
    result = run_dicomscu(*args, misbehaving + path, "-o", str(out), timeout=60) if "--get" in args else \
        run_dicomscu(*args, misbehaving + path, timeout=60)
    assert time.monotonic() - started < 20
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("dicomscu: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    if out.exists():
        assert not list(out.rglob("*.part"))
        if path == "/trunc":  # the whole first part is kept, the cut one is not
            assert len(list(out.rglob("*.dcm"))) == 1


def test_busy_server_is_retried_and_the_token_never_shows(misbehaving):
    token = "s3cr3t-t0ken-value"
    result = run_dicomscu(misbehaving + "/busy", "-D", env={"DICOMSCU_TOKEN": token, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr  # 503 with Retry-After: 1, then success
    assert token not in result.stdout + result.stderr


def test_a_profile_may_name_a_dicomweb_url(web_orthanc, tmp_path):
    profiles = tmp_path / "servers.toml"
    profiles.write_text(f'[web]\nurl = "{web_orthanc.dicomweb_url}"\ntimeout = 20\ntoken = "never-shown"\n')
    result = run_inprocess("@web", "--config", str(profiles))
    assert result.returncode == 0 and "DICOMweb echo (QIDO-RS)" in result.stdout, result.stderr
    listed = run_inprocess("--list-servers", "--config", str(profiles))
    assert "(DICOMweb) with a token" in listed.stdout and "never-shown" not in listed.stdout


def test_serve_speaks_dicomweb_over_the_same_index(dataset_dir, tmp_path):
    """`dicomscu serve --http`: STOW-RS in, QIDO-RS answers equal to its own C-FIND's, WADO-RS data sets
    identical to the originals, and instances stored by DIMSE visible over HTTP (one index)."""
    from dicomscu.server.pacs import Pacs, ServerConfig

    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               http_port=free_port()))
    server.start()
    url = f"http://127.0.0.1:{server.config.http_port}/dicom-web"
    dimse = ("127.0.0.1", str(server.port), "--call", "DICOMSCU")
    try:
        stow = run_dicomscu("--store", url, str(dataset_dir / "small"), "--format", "json")
        assert stow.returncode == 0 and json.loads(stow.stdout)["summary"]["stored"] == 60, stow.stderr
        by_dimse = run_dicomscu("--store", *dimse, str(dataset_dir / "big"))
        assert by_dimse.returncode == 0, by_dimse.stderr

        def study_uids(*peer: str) -> set[str]:
            found = run_dicomscu("--find", "--study", "--studyroot", *peer, "-k", "PatientID", "--format", "json")
            assert found.returncode == 0, found.stderr
            return {answer["0020000D"]["Value"][0] for answer in json.loads(found.stdout)}

        assert study_uids(url) == study_uids(*dimse) and len(study_uids(url)) > 1
        few = run_dicomscu("--find", "--image", "--studyroot", url, "-k", "SOPInstanceUID", "--limit", "5",
                           "--format", "csv")
        assert few.returncode == 0 and few.stdout.count("\n") == 1 + 5, few.stdout
        out = tmp_path / "out"
        got = run_dicomscu("--find", "--study", "--studyroot", url, "-k", "PatientID", "--then", "get",
                           "-o", str(out), "--accept-all-syntaxes")
        assert got.returncode == 0, got.stderr
        originals = sorted(dataset_dir.rglob("*.dcm"))
        assert dataset_digests(out.rglob("*.dcm")) == dataset_digests(originals)
        bad = run_inprocess("--get", "--study", url, "-k", "StudyInstanceUID=1.2.3.4.5", "-o", str(tmp_path / "x"))
        assert bad.returncode == 1 and "HTTP 404" in bad.stderr
    finally:
        server.stop()


def test_wado_skip_existing_fetches_only_what_is_missing(dataset_dir, tmp_path):
    """--skip-existing over WADO-RS: a QIDO-RS search of the study's instances, each looked for on disk;
    only the missing one is fetched, then nothing."""
    import pydicom

    from dicomscu.server.pacs import Pacs, ServerConfig

    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               http_port=free_port()))
    server.start()
    url = f"http://127.0.0.1:{server.config.http_port}/dicom-web"
    study = pydicom.dcmread(next((dataset_dir / "small").iterdir()), stop_before_pixels=True).StudyInstanceUID
    get = ("--get", "--study", "--studyroot", url, "-k", f"StudyInstanceUID={study}", "-o", str(tmp_path / "out"),
           "--layout", "hierarchical")
    try:
        assert run_dicomscu("--store", url, str(dataset_dir / "small")).returncode == 0
        first = run_dicomscu(*get, "--skip-existing")  # nothing there yet: the study in one request
        files = sorted((tmp_path / "out").rglob("*.dcm"))
        files[0].unlink()
        again = run_dicomscu(*get, "--skip-existing")
        last = run_dicomscu(*get, "--skip-existing")
    finally:
        server.stop()
    assert first.returncode == 0 and f"{len(files)} completed" in first.stdout, first.stdout + first.stderr
    assert again.returncode == 0 and " 1 completed" in again.stdout, again.stdout + again.stderr
    assert f"{len(files) - 1} already present (skipped)" in again.stdout, again.stdout
    assert last.returncode == 0 and f"{len(files)} already present (skipped)" in last.stdout, last.stdout
    assert " 0 completed" in last.stdout and sorted((tmp_path / "out").rglob("*.dcm")) == files


def test_wado_with_jobs_spreads_a_study_over_connections_by_series(tmp_path):
    """-j 2 over WADO-RS: one study becomes its three series (a QIDO-RS search), fetched two at a time;
    every instance is written once, as the one-connection run writes it."""
    import pydicom

    from dicomscu.sample import SampleSpec, write_sample
    from dicomscu.server.pacs import Pacs, ServerConfig

    sample = tmp_path / "sample"
    write_sample(sample, SampleSpec(patients=1, studies=1, series=3, images=4, modalities=("CT",), matrix=32))
    files = sorted(sample.rglob("*.dcm"))
    study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               http_port=free_port()))
    server.start()
    url = f"http://127.0.0.1:{server.config.http_port}/dicom-web"
    try:
        assert run_dicomscu("--store", url, *map(str, files)).returncode == 0
        runs = {jobs: run_dicomscu("--get", "--study", "--studyroot", url, "-k", f"StudyInstanceUID={study}",
                                   "-o", str(tmp_path / f"j{jobs}"), "-j", str(jobs), "--format", "json")
                for jobs in (1, 2)}
    finally:
        server.stop()
    for jobs, run in runs.items():
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
        assert summary["completed"] == 12 and summary["written"] == 12, summary
        assert summary["requests"] == (1 if jobs == 1 else 3), summary
    assert dataset_digests((tmp_path / "j2").rglob("*.dcm")) == dataset_digests((tmp_path / "j1").rglob("*.dcm")) \
        == dataset_digests(files)


def test_serve_survives_a_client_that_goes_away_mid_answer_quietly(dataset_dir, tmp_path, capfd):
    """A WADO-RS client that resets the connection mid-answer: serve logs one line, prints no traceback,
    and answers the next client."""
    import socket
    import struct

    import pydicom

    from dicomscu.server.pacs import Pacs, ServerConfig

    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               http_port=free_port()))
    server.start()
    url = f"http://127.0.0.1:{server.config.http_port}/dicom-web"
    study = pydicom.dcmread(next((dataset_dir / "big").iterdir()), stop_before_pixels=True).StudyInstanceUID
    try:
        assert run_dicomscu("--store", url, str(dataset_dir / "big")).returncode == 0
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.config.http_port)) as client:
                client.sendall(f"GET /dicom-web/studies/{study} HTTP/1.1\r\nHost: x\r\n"
                               "Accept: multipart/related; type=\"application/dicom\"\r\n\r\n".encode())
                client.recv(1000)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        time.sleep(1)
        after = run_dicomscu("--get", "--study", "--studyroot", url, "-k", f"StudyInstanceUID={study}",
                             "-o", str(tmp_path / "out"))
    finally:
        server.stop()
    assert after.returncode == 0, after.stderr
    assert "Traceback" not in capfd.readouterr().err


def test_serve_wado_sends_the_transfer_syntax_asked_for(dataset_dir, tmp_path):
    """serve's WADO-RS: by default (no transfer-syntax) Explicit VR Little Endian, re-encoded from the
    Implicit VR files stored, the same data set; a syntax asked for by name; a compressed instance
    decompressed (the same instance, the decoder's pixels) or as stored (transfer-syntax=*); one that no
    decoder reads only as stored, else 406 and one clear line, or 206 when others could go."""
    import urllib.request

    import numpy
    import pydicom
    from pydicom.data import get_testdata_file

    from dicomscu.server.pacs import Pacs, ServerConfig

    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               http_port=free_port()))
    server.start()
    url = f"http://127.0.0.1:{server.config.http_port}/dicom-web"
    jpeg2000 = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))
    mpeg2 = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))  # no decoder exists for MPEG2: as if one
    mpeg2.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    mpeg2.StudyInstanceUID, mpeg2.SOPInstanceUID = "1.2.826.0.1.3680043.10.1137.98", "1.2.826.0.1.3680043.10.1137.98.1"
    mpeg2.file_meta.MediaStorageSOPInstanceUID = mpeg2.SOPInstanceUID
    mpeg2.save_as(tmp_path / "mpeg2.dcm")
    try:
        stored = run_dicomscu("--store", url, str(dataset_dir / "small"), get_testdata_file("JPEG2000.dcm"),
                              str(tmp_path / "mpeg2.dcm"))
        assert stored.returncode == 0, stored.stderr
        every = [pydicom.dcmread(path) for path in sorted((dataset_dir / "small").iterdir())]
        study = every[0].StudyInstanceUID
        originals = {ds.SOPInstanceUID: ds for ds in every if ds.StudyInstanceUID == study}
        out = tmp_path / "explicit"
        got = run_dicomscu("--get", "--study", "--studyroot", url, "-k", f"StudyInstanceUID={study}", "-o", str(out))
        assert got.returncode == 0, got.stderr
        received = {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, out.rglob("*.dcm"))}
        assert {ds.file_meta.TransferSyntaxUID for ds in received.values()} == {"1.2.840.10008.1.2.1"}
        assert set(received) == set(originals) and originals[every[0].SOPInstanceUID].file_meta.TransferSyntaxUID \
            == "1.2.840.10008.1.2"  # stored as Implicit VR
        for uid, original in originals.items():
            assert received[uid] == original  # every element, every value

        request = urllib.request.Request(f"{url}/studies/{study}", headers={
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2'})
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
        assert response.status == 200 and b"transfer-syntax=1.2.840.10008.1.2\r\n" in body

        plain = run_dicomscu("--get", "--study", "--studyroot", url, "-k",
                             f"StudyInstanceUID={jpeg2000.StudyInstanceUID}", "-o", str(tmp_path / "plain"))
        assert plain.returncode == 0, plain.stderr
        (decompressed,) = map(pydicom.dcmread, (tmp_path / "plain").rglob("*.dcm"))
        assert decompressed.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert decompressed.SOPInstanceUID == jpeg2000.SOPInstanceUID  # the same instance
        assert numpy.array_equal(decompressed.pixel_array, jpeg2000.pixel_array)
        kept = run_dicomscu("--get", "--study", "--studyroot", url, "-k",
                            f"StudyInstanceUID={jpeg2000.StudyInstanceUID}", "-o", str(tmp_path / "as-stored"),
                            "--accept-all-syntaxes")
        assert kept.returncode == 0, kept.stderr
        assert dataset_digests((tmp_path / "as-stored").rglob("*.dcm")) == \
            dataset_digests([get_testdata_file("JPEG2000.dcm")])

        refused = run_dicomscu("--get", "--study", "--studyroot", url, "-k",
                               f"StudyInstanceUID={mpeg2.StudyInstanceUID}", "-o", str(tmp_path / "no"))
        assert refused.returncode == 1 and "HTTP 406" in refused.stderr and "transfer-syntax=*" in refused.stderr
        mpeg2.StudyInstanceUID, mpeg2.SOPInstanceUID = study, "1.2.826.0.1.3680043.10.1137.99.99"
        mpeg2.file_meta.MediaStorageSOPInstanceUID = mpeg2.SOPInstanceUID  # now in the Implicit VR study
        mpeg2.save_as(tmp_path / "mixed.dcm")
        assert run_dicomscu("--store", url, str(tmp_path / "mixed.dcm")).returncode == 0
        partial = run_dicomscu("--get", "--study", "--studyroot", url, "-k", f"StudyInstanceUID={study}",
                               "-o", str(tmp_path / "partial"))
        assert partial.returncode == 1 and "HTTP 206 Partial Content" in partial.stderr, partial.stderr
        assert "1 instance(s) stored compressed are left out" in partial.stderr
        assert len(list((tmp_path / "partial").rglob("*.dcm"))) == len(originals)  # the others, re-encoded
    finally:
        server.stop()


def test_serve_stow_refuses_bad_parts_and_bad_requests(tmp_path, dataset_dir):
    import urllib3

    from dicomscu.server.pacs import Pacs, ServerConfig

    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               http_port=free_port()))
    server.start()
    base = f"http://127.0.0.1:{server.config.http_port}/dicom-web"
    good = sorted((dataset_dir / "small").iterdir())[0].read_bytes()
    try:
        def stow(parts: list[bytes], content_type: str | None = None):
            body = b"".join(b"--XX\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n" for p in parts) + \
                b"--XX--\r\n"
            kind = content_type or 'multipart/related; type="application/dicom"; boundary=XX'
            return urllib3.request("POST", base + "/studies", body=body, headers={"Content-Type": kind})

        mixed = stow([good, b"not dicom at all"])
        document = json.loads(mixed.data)
        assert mixed.status == 202 and len(document["00081199"]["Value"]) == 1
        assert document["00081198"]["Value"][0]["00081197"]["Value"] == [0xC000]
        assert stow([b"junk"]).status == 409
        assert stow([good], "application/dicom").status == 415
        assert urllib3.request("GET", base + "/studies/not-a-uid").status == 400
        assert urllib3.request("GET", base + "/nothing-here").status == 404
        assert not list(Path(server.storage).rglob("*.part"))
    finally:
        server.stop()


def test_worklist_over_dicomweb_is_a_ups_rs_search(misbehaving, web_orthanc):
    """--worklist with a URL searches /workitems with the QIDO syntax (sequence attributes by path), page by
    page, and prints the Unified Procedure Steps as any find; a server without UPS-RS, or an MWL-only key,
    gets one clear line."""
    Misbehaving.queries.clear()
    result = run_inprocess("--worklist", misbehaving + "/ups", "-k", "PatientName=Doe*", "-k", "ProcedureStepState",
                           "-k", "ScheduledStationNameCodeSequence[0].CodeValue", "--format", "json")
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert [a["00100010"]["Value"][0]["Alphabetic"] for a in answers] == ["Doe^Jane", "Doe^John"]
    assert answers[0]["00741000"]["Value"] == ["SCHEDULED"]
    assert answers[0]["00404025"]["Value"][0]["00080100"]["Value"] == ["CT01"]
    query = Misbehaving.queries[0]
    assert ("PatientName", "Doe*") in query and ("includefield", "ProcedureStepState") in query
    assert ("includefield", "ScheduledStationNameCodeSequence.CodeValue") in query

    Misbehaving.queries.clear()  # no keys: the UPS's own; --limit pages with limit/offset
    result = run_inprocess("--worklist", misbehaving + "/ups", "--limit", "2", "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 3 and "CT chest 2" in result.stdout
    assert "UPS-RS" in result.stderr and "(Unified Procedure Steps): 2 match(es)" in result.stderr
    assert ("includefield", "ScheduledProcedureStepStartDateTime") in Misbehaving.queries[0]
    assert ("limit", "2") in Misbehaving.queries[0]

    result = run_inprocess("--worklist", web_orthanc.dicomweb_url)
    assert result.returncode == 1 and "offers no UPS-RS" in result.stderr and "DIMSE" in result.stderr
    result = run_inprocess("--worklist", misbehaving + "/ups", "-k", "AccessionNumber=A1")
    assert result.returncode == 2 and "ReferencedRequestSequence[0].AccessionNumber" in result.stderr
