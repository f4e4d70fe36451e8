"""TLS (PS3.15) against DCMTK storescp +tls, with certificates made by the test (openssl)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import run_dicomscu
from peers import StoreSCP, free_port, need, stop, wait_for_port


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run([need("openssl"), *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(folder: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=folder)


def make_cert(folder: Path, name: str, ca: str) -> None:
    (folder / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=folder)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=folder)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pki")
    make_ca(folder, "ca")
    make_ca(folder, "otherca")
    make_cert(folder, "server", "ca")
    make_cert(folder, "client", "ca")
    return folder


@pytest.fixture
def tls_storescp(pki, tmp_path):
    port = free_port()
    out = tmp_path / "received"
    out.mkdir()
    log = (tmp_path / "storescp.log").open("w")
    process = subprocess.Popen([need("storescp"), "+tls", str(pki / "server.key"), str(pki / "server.crt"), "-pw",
                                "+cf", str(pki / "ca.crt"), "-od", str(out), "-v", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(port, process)
    yield port, out
    stop(process)


def tls_args(pki: Path, ca: str = "ca") -> list[str]:
    return ["--tls", "--tls-ca", str(pki / f"{ca}.crt"), "--tls-cert", str(pki / "client.crt"),
            "--tls-key", str(pki / "client.key")]


def test_echo_and_store_over_tls(tls_storescp, pki, dataset_dir):
    port, out = tls_storescp
    echo = run_dicomscu("localhost", str(port), *tls_args(pki))
    assert echo.returncode == 0, echo.stderr
    files = [str(p) for p in sorted((dataset_dir / "small").iterdir())[:5]]
    store = run_dicomscu("--store", "localhost", str(port), *tls_args(pki), *files)
    assert store.returncode == 0, store.stderr
    assert len(list(out.iterdir())) == 5


def test_wrong_ca_is_a_clear_verification_error(tls_storescp, pki):
    port, _ = tls_storescp
    result = run_dicomscu("localhost", str(port), *tls_args(pki, ca="otherca"))
    assert result.returncode == 3
    assert "could not be verified" in result.stderr and "Traceback" not in result.stderr


def test_plain_client_to_tls_port_says_so(tls_storescp):
    port, _ = tls_storescp
    result = run_dicomscu("localhost", str(port), "--timeout", "5")
    assert result.returncode in (5, 7), result.stderr
    assert "--tls" in result.stderr and "Traceback" not in result.stderr


def test_tls_client_to_plain_port_says_so(pki, tmp_path):
    scp = StoreSCP(tmp_path / "plain")
    try:
        result = run_dicomscu("localhost", str(scp.port), *tls_args(pki), "--timeout", "5")
    finally:
        scp.close()
    assert result.returncode == 3
    assert "TLS handshake" in result.stderr and "Traceback" not in result.stderr


def test_missing_tls_file_is_usage_error(tmp_path):
    result = run_dicomscu("localhost", "104", "--tls-ca", str(tmp_path / "nope.crt"))
    assert result.returncode == 2 and "--tls-ca" in result.stderr


def test_serve_over_tls(pki, tmp_path, dataset_dir):
    """dicomscu serve with a certificate, requiring client certificates from our CA."""
    import sys

    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-m", "dicomscu", "serve", "--port", str(port), "--bind", "127.0.0.1",
                               "--storage", str(tmp_path / "storage"), "--tls-cert", str(pki / "server.crt"),
                               "--tls-key", str(pki / "server.key"), "--tls-ca", str(pki / "ca.crt")],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, server, timeout=30)
        base = ["localhost", str(port), "--call", "DICOMSCU", *tls_args(pki)]
        assert run_dicomscu(*base).returncode == 0
        files = [str(p) for p in sorted((dataset_dir / "small").iterdir())[:3]]
        store = run_dicomscu("--store", *base, *files)
        assert store.returncode == 0, store.stderr
        find = run_dicomscu("--find", "--image", "--studyroot", *base, "--format", "csv")
        assert find.returncode == 0 and len(find.stdout.splitlines()) == 4
        windowed = run_dicomscu("--store", *base, "--window", "16", "-D", str(dataset_dir / "small"))
        assert windowed.returncode == 0 and "60 of 60" in windowed.stdout, windowed.stderr
        assert "up to 16 operations outstanding" in windowed.stderr  # granted over TLS as over TCP
        find = run_dicomscu("--find", "--image", "--studyroot", *base, "--format", "csv")
        assert len(find.stdout.splitlines()) == 61
        no_client_cert = run_dicomscu("localhost", str(port), "--call", "DICOMSCU", "--tls-ca", str(pki / "ca.crt"),
                                      "--timeout", "5")
        assert no_client_cert.returncode != 0 and "Traceback" not in no_client_cert.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_tls_ca_must_be_pem_and_may_be_a_directory(tmp_path, pki, tls_storescp):
    """A non-PEM --tls-ca is a usage error naming the option; a hashed directory of CAs (capath) works."""
    import shutil
    import subprocess

    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"\x00\x01 not a certificate")
    bad = run_dicomscu("--tls", "--tls-ca", str(junk), "127.0.0.1", "11112")
    assert bad.returncode == 2 and "--tls-ca" in bad.stderr and "internal error" not in bad.stderr
    folder = tmp_path / "cas"
    folder.mkdir()
    shutil.copy(pki / "ca.crt", folder / "ca.pem")
    subprocess.run(["openssl", "rehash", str(folder)], check=True, capture_output=True)
    port, _ = tls_storescp
    args = tls_args(pki)
    args[args.index("--tls-ca") + 1] = str(folder)
    ok = run_dicomscu("localhost", str(port), *args)
    assert ok.returncode == 0, ok.stderr
