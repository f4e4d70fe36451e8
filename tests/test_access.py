"""One access policy for both of serve's protocols: what DIMSE refuses, HTTP refuses too.

The matrix: bind address, bearer token, HTTP Basic, TLS, client certificate, read-only and --no-overwrite,
each for QIDO-RS, WADO-RS and STOW-RS (and C-STORE where it applies), with dicomscu's own DICOMweb client
and raw HTTP; plus the bounds of the HTTP side (malformed requests, a header deadline) and the race of
several associations sending one new SOP Instance UID under --no-overwrite.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import ssl
import threading
import time
from pathlib import Path

import pydicom
import pytest

from conftest import run_dicomscu
from peers import free_port
from test_tls import make_ca, make_cert

from dicomscu.errors import UsageError
from dicomscu.server.access import Credentials
from dicomscu.server.pacs import Pacs, ServerConfig
from dicomscu.transport.peer import TLS

TOKEN = "s3cret-token-123"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    make_ca(folder, "ca")
    make_cert(folder, "server", "ca")
    make_cert(folder, "client", "ca")
    return folder


@pytest.fixture(scope="module")
def instance_files(dataset_dir) -> list[Path]:
    return sorted((dataset_dir / "small").iterdir())[:3]


class Server:
    """serve in this process, on free loopback ports, stopped at the end of the `with`."""

    def __init__(self, tmp_path: Path, **settings) -> None:
        settings.setdefault("http_port", 0)
        self.pacs = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                                      **settings))

    def __enter__(self) -> "Server":
        self.pacs.start()
        return self

    def __exit__(self, *exc) -> None:
        self.pacs.stop()

    @property
    def dimse(self) -> tuple[str, ...]:
        return ("127.0.0.1", str(self.pacs.port), "--call", "DICOMSCU")

    def url(self, scheme: str = "http", userinfo: str = "") -> str:
        return f"{scheme}://{userinfo}127.0.0.1:{self.pacs.http_port}/dicom-web"

    def request(self, method: str, path: str, headers: dict | None = None, body: bytes | None = None,
                context: ssl.SSLContext | None = None) -> tuple[int, dict, bytes]:
        if context is None:
            connection = http.client.HTTPConnection("127.0.0.1", self.pacs.http_port, timeout=20)
        else:
            connection = http.client.HTTPSConnection("127.0.0.1", self.pacs.http_port, timeout=20,
                                                     context=context)
        try:
            connection.request(method, "/dicom-web" + path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


def _stow_body(*files: Path) -> tuple[bytes, dict]:
    boundary = "b0undary"
    body = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + f.read_bytes()
                    + b"\r\n" for f in files) + b"--" + boundary.encode() + b"--\r\n"
    return body, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}


def test_the_http_side_listens_on_loopback_unless_opened(tmp_path):
    with Server(tmp_path) as server:
        assert server.pacs._web._server.server_address[0] == "127.0.0.1"
        outside = [address for address in _local_addresses() if address != "127.0.0.1"]
        for address in outside:  # another interface of this machine cannot reach it
            with pytest.raises(OSError):
                socket.create_connection((address, server.pacs.http_port), timeout=2).close()
    assert ServerConfig().http_bind == "127.0.0.1"


def _local_addresses() -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)})
    except OSError:
        return []


def test_tokens_and_basic_are_demanded_by_every_dicomweb_service(tmp_path, instance_files):
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# who may use it\n{TOKEN}\nalice:wonder-land\n")
    client_token = tmp_path / "client-token"
    client_token.write_text(TOKEN + "\n")
    credentials = Credentials.from_file(str(token_file))
    log = tmp_path / "serve.log"
    with Server(tmp_path, http_credentials=credentials) as server:
        body, headers = _stow_body(*instance_files)
        for method, path, payload in (("GET", "/studies", None), ("GET", "/studies/1.2.3", None),
                                      ("POST", "/studies", body)):
            status, answer_headers, _ = server.request(method, path, headers if payload else {}, payload)
            assert status == 401, (method, path)
            assert "Bearer" in answer_headers["WWW-Authenticate"] and "Basic" in answer_headers["WWW-Authenticate"]
            wrong = {"Authorization": "Bearer not-the-token", **(headers if payload else {})}
            assert server.request(method, path, wrong, payload)[0] == 401
        assert server.pacs.index.count() == 0  # the anonymous STOW-RS stored nothing
        # the client: no credentials -> exit 6 with the hint; a token file, Basic, and DICOMSCU_TOKEN work
        refused = run_dicomscu("--find", "--study", server.url(), "-k", "PatientID")
        assert refused.returncode == 6 and "token" in refused.stderr, refused.stderr
        stored = run_dicomscu("--store", server.url(), *map(str, instance_files), "--token-file", str(client_token),
                              "-D", "-L", str(log))
        assert stored.returncode == 0, stored.stderr
        basic = run_dicomscu("--find", "--study", server.url(userinfo="alice:wonder-land@"), "-k", "PatientID",
                             "--format", "json")
        assert basic.returncode == 0 and json.loads(basic.stdout), basic.stderr
        import os

        env = {**os.environ, "DICOMSCU_TOKEN": TOKEN}
        got = run_dicomscu("--get", "--study", "--studyroot", server.url(), "-k",
                           f"StudyInstanceUID={pydicom.dcmread(instance_files[0]).StudyInstanceUID}",
                           "-o", str(tmp_path / "got"), env=env)
        assert got.returncode == 0, got.stderr
        basic_header = "Basic " + base64.b64encode(b"anyone:" + TOKEN.encode()).decode()  # a token as password
        assert server.request("GET", "/studies", {"Authorization": basic_header})[0] == 200
    assert list((tmp_path / "got").rglob("*.dcm"))
    assert TOKEN not in log.read_text() and "wonder-land" not in log.read_text()


def test_a_token_file_without_tokens_is_a_usage_error(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n\n")
    with pytest.raises(UsageError, match="holds no token"):
        Credentials.from_file(str(empty))
    result = run_dicomscu("serve", "--http", str(free_port()), "--http-token-file", str(tmp_path / "missing"),
                          "--storage", str(tmp_path / "s"))
    assert result.returncode == 2 and "--http-token-file" in result.stderr, result.stderr


def test_an_http_side_weaker_than_the_dimse_side_is_refused(tmp_path):
    """--require-calling checks who calls over DIMSE: an HTTP side without credentials would let anyone in."""
    result = run_dicomscu("serve", "--port", str(free_port()), "--http", str(free_port()), "--require-calling",
                          "MODALITY", "--storage", str(tmp_path / "s"))
    assert result.returncode == 2 and "--http-token-file" in result.stderr, result.stderr
    with pytest.raises(UsageError):
        with Server(tmp_path, require_calling=["MODALITY"]):
            pass


def test_read_only_refuses_c_store_and_stow_rs_alike(tmp_path, instance_files):
    with Server(tmp_path, read_only=True) as server:
        stored = run_dicomscu("--store", *server.dimse, *map(str, instance_files))
        body, headers = _stow_body(*instance_files)
        status, _, answer = server.request("POST", "/studies", headers, body)
        searched = server.request("GET", "/studies")
        echo = run_dicomscu(*server.dimse)
        assert server.pacs.index.count() == 0
    assert stored.returncode == 1 and "Not Authorized" in stored.stdout + stored.stderr, stored.stderr
    assert status == 403 and b"read-only" in answer
    assert searched[0] == 204 and echo.returncode == 0  # reading still works
    assert not [p for p in (tmp_path / "storage").rglob("*") if p.is_file() and p.suffix in (".dcm", ".part")]


def test_no_overwrite_holds_for_stow_rs(tmp_path, instance_files):
    original = instance_files[0]
    changed = pydicom.dcmread(original)
    changed.PatientName = "Changed^Content"
    changed_path = tmp_path / "changed.dcm"
    changed.save_as(changed_path)
    with Server(tmp_path, overwrite=False) as server:
        body, headers = _stow_body(original)
        assert server.request("POST", "/studies", headers, body)[0] == 200
        body, headers = _stow_body(changed_path)
        status, _, answer = server.request("POST", "/studies", headers, body)
        path = server.pacs.resolve(server.pacs.index.path_of(changed.SOPInstanceUID))
    assert status == 409
    failed = json.loads(answer)["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0x0111]
    assert failed["00081155"]["Value"] == [changed.SOPInstanceUID]
    assert pydicom.dcmread(path).PatientName == pydicom.dcmread(original).PatientName  # the first one kept


def test_https_with_client_certificates_beside_a_tls_dimse_port(tmp_path, pki, instance_files):
    tls = TLS(cert=str(pki / "server.crt"), key=str(pki / "server.key"), ca=str(pki / "ca.crt"))
    with Server(tmp_path, tls=tls) as server:
        with pytest.raises((http.client.HTTPException, OSError)):  # no plain HTTP beside a TLS DIMSE port
            server.request("GET", "/studies")
        anonymous = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        with pytest.raises((ssl.SSLError, OSError, http.client.HTTPException)):  # no client certificate
            server.request("GET", "/studies", context=anonymous)
        client = ["--tls-ca", str(pki / "ca.crt"), "--tls-cert", str(pki / "client.crt"),
                  "--tls-key", str(pki / "client.key")]
        stored = run_dicomscu("--store", server.url("https"), *map(str, instance_files), *client)
        found = run_dicomscu("--find", "--study", server.url("https"), "-k", "PatientID", "--format", "json",
                             *client)
        without = run_dicomscu("--find", "--study", server.url("https"), "-k", "PatientID",
                               "--tls-ca", str(pki / "ca.crt"))
    assert stored.returncode == 0, stored.stderr
    assert found.returncode == 0 and json.loads(found.stdout), found.stderr
    assert without.returncode != 0 and "Traceback" not in without.stderr


def test_malformed_requests_get_400_with_a_reason(tmp_path):
    with Server(tmp_path) as server:
        for path in ("/studies?limit=%C2%B2", "/studies?limit=-1", "/studies?ReferencedStudySequence=1",
                     "/studies?NoSuchAttribute=1", "/studies/not-a-uid"):
            status, _, body = server.request("GET", path)
            assert status == 400 and json.loads(body)["error"], (path, status, body)
        with socket.create_connection(("127.0.0.1", server.pacs.http_port), timeout=10) as raw:
            raw.sendall(b"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n"
                        b"Content-Type: multipart/related; boundary=x\r\n\r\n")
            answer = raw.recv(4096)
        assert answer.startswith(b"HTTP/1.1 400") and b"Content-Length" in answer


def test_a_client_that_trickles_its_headers_is_cut_off(tmp_path, monkeypatch):
    from dicomscu.server import web

    monkeypatch.setattr(web, "HEADER_SECONDS", 1.0)
    with Server(tmp_path) as server:
        with socket.create_connection(("127.0.0.1", server.pacs.http_port), timeout=10) as raw:
            start = time.monotonic()
            raw.sendall(b"GET /dicom-web/studies HTTP/1.1\r\n")
            closed = False
            try:
                for _ in range(40):  # one header byte every 0.25 s: never a whole request
                    raw.sendall(b"X")
                    time.sleep(0.25)
                    raw.setblocking(False)
                    try:
                        if raw.recv(1) == b"":
                            closed = True
                            break
                    except BlockingIOError:
                        pass
                    finally:
                        raw.setblocking(True)
            except OSError:
                closed = True
            elapsed = time.monotonic() - start
        assert closed and elapsed < 5, elapsed
        assert server.request("GET", "/studies")[0] == 204  # the server still answers others


def test_of_eight_associations_sending_one_new_uid_exactly_one_is_told_stored(tmp_path):
    """--no-overwrite, 8 senders at once of one SOP Instance UID with different 6 MB contents, 5 rounds: one
    success each round, and the content kept is the one that was told "stored"."""
    import numpy

    from dicomscu.operations.store import store
    from dicomscu.transport.peer import Peer

    rounds, senders = 5, 8
    with Server(tmp_path, overwrite=False, http_port=None) as server:
        for round_number in range(rounds):
            uid = f"1.2.826.0.1.3680043.10.1137.8.{round_number}"
            paths = []
            for sender in range(senders):
                dataset = _big_instance(uid, sender, numpy)
                path = tmp_path / f"r{round_number}s{sender}.dcm"
                dataset.save_as(path, enforce_file_format=True)
                paths.append(path)
            barrier = threading.Barrier(senders)
            reports: dict[int, object] = {}

            def send(sender: int) -> None:
                peer = Peer("127.0.0.1", server.pacs.port, called_ae="DICOMSCU")
                barrier.wait()
                reports[sender] = store(peer, [str(paths[sender])])

            threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            winners = [n for n, report in reports.items() if report.stored == 1]  # type: ignore[attr-defined]
            assert len(reports) == senders and len(winners) == 1, {n: r.counts for n, r in reports.items()}
            kept = server.pacs.resolve(server.pacs.index.path_of(uid))
            digest = hashlib.sha256(pydicom.dcmread(kept).PixelData).hexdigest()
            assert digest == hashlib.sha256(pydicom.dcmread(paths[winners[0]]).PixelData).hexdigest()


def _big_instance(uid: str, seed: int, numpy):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    dataset.SOPInstanceUID = uid
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = uid + ".1", uid + ".2"
    dataset.PatientID = f"RACE{seed}"
    dataset.Rows, dataset.Columns, dataset.SamplesPerPixel = 1732, 1732, 1
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 16, 16, 15, 0
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.PixelData = numpy.full((1732, 1732), seed, "<u2").tobytes()  # 6 MB
    return dataset


def test_stow_rs_to_a_study_keeps_only_that_studys_instances_and_answers_retrieve_urls(tmp_path, instance_files):
    """PS3.18 10.5: POST /studies/{S} refuses an instance of another study (0xA900, with its UIDs) and stores
    the rest; /studies/not-a-uid is a bad request; stored instances are answered with their RetrieveURL, the
    answer with the study's."""
    originals = [pydicom.dcmread(path, stop_before_pixels=True) for path in instance_files]
    study = originals[0].StudyInstanceUID
    other = tmp_path / "other-study.dcm"
    changed = pydicom.dcmread(instance_files[0])
    changed.StudyInstanceUID, changed.SOPInstanceUID = "1.2.826.0.1.3680043.10.1137.9.9", "1.2.826.0.1.3680043.10.1137.9.10"
    changed.save_as(other)
    with Server(tmp_path) as server:
        body, headers = _stow_body(instance_files[0], other)
        status, _, answer = server.request("POST", f"/studies/{study}", headers, body)
        assert status == 202, answer
        document = json.loads(answer)
        (failed,) = document["00081198"]["Value"]
        assert failed["00081155"]["Value"] == ["1.2.826.0.1.3680043.10.1137.9.10"] and failed["00081197"]["Value"] == [0xA900]
        (stored,) = document["00081199"]["Value"]
        url = stored["00081190"]["Value"][0]
        assert url.endswith(f"/dicom-web/studies/{study}/series/{originals[0].SeriesInstanceUID}/instances/"
                            f"{originals[0].SOPInstanceUID}") and url.startswith("http://127.0.0.1:")
        assert document["00081190"]["Value"] == [f"http://127.0.0.1:{server.pacs.http_port}/dicom-web/studies/{study}"]
        assert server.pacs.index.path_of("1.2.826.0.1.3680043.10.1137.9.10") is None  # never stored
        assert server.request("POST", "/studies/not-a-uid", headers, body)[0] == 400
        status, _, answer = server.request("GET", url[url.index("/dicom-web") + len("/dicom-web"):],
                                           {"Accept": 'multipart/related; type="application/dicom"'})
        assert status == 200  # the RetrieveURL retrieves the instance


def test_a_browser_can_call_it_preflight_cors_and_head(tmp_path, instance_files):
    """A viewer on another origin: the preflight (OPTIONS, no credentials) is answered for an origin allowed
    (--http-cors, or by default a page from this machine), every answer names the origin, HEAD gives a GET's
    status and headers without its body; an origin not allowed gets no CORS header (the browser blocks it)."""
    token_file = tmp_path / "tokens"
    token_file.write_text(TOKEN + "\n")
    viewer = "https://viewer.example.org"
    with Server(tmp_path, http_cors=(viewer,), http_credentials=Credentials.from_file(str(token_file))) as server:
        body, headers = _stow_body(*instance_files)
        assert server.request("POST", "/studies", {**headers, "Authorization": f"Bearer {TOKEN}"}, body)[0] == 200
        preflight = {"Origin": viewer, "Access-Control-Request-Method": "GET",
                     "Access-Control-Request-Headers": "authorization"}
        status, answer_headers, _ = server.request("OPTIONS", "/studies", preflight)
        assert status == 204 and answer_headers["Access-Control-Allow-Origin"] == viewer
        assert "Authorization" in answer_headers["Access-Control-Allow-Headers"]
        assert "GET" in answer_headers["Access-Control-Allow-Methods"]
        status, answer_headers, body = server.request("GET", "/studies", {"Origin": viewer,
                                                                         "Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and answer_headers["Access-Control-Allow-Origin"] == viewer and json.loads(body)
        status, answer_headers, _ = server.request("GET", "/studies", {"Origin": "https://evil.example"})
        assert status == 401 and "Access-Control-Allow-Origin" not in answer_headers
        status, answer_headers, _ = server.request("OPTIONS", "/studies", {**preflight, "Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in answer_headers
        connection = http.client.HTTPConnection("127.0.0.1", server.pacs.http_port, timeout=20)
        try:  # HEAD, then a GET on the same connection: the HEAD's answer had no body
            connection.request("HEAD", "/dicom-web/studies", headers={"Authorization": f"Bearer {TOKEN}"})
            head = connection.getresponse()
            assert head.status == 200 and head.read() == b""
            connection.request("GET", "/dicom-web/studies", headers={"Authorization": f"Bearer {TOKEN}"})
            get = connection.getresponse()
            assert get.status == 200 and json.loads(get.read())
        finally:
            connection.close()
    with Server(tmp_path / "default") as server:  # no --http-cors: pages from this machine only
        local = server.request("GET", "/studies", {"Origin": "http://localhost:3000"})[1]
        remote = server.request("GET", "/studies", {"Origin": viewer})[1]
        assert local.get("Access-Control-Allow-Origin") == "http://localhost:3000"
        assert "Access-Control-Allow-Origin" not in remote
