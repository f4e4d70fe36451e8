"""Real DICOM peers for the tests: DCMTK storescp, Orthanc, and a pynetdicom SCP.

Each peer is a real program listening on a free loopback port, started and
stopped by a fixture.  Nothing here mocks the network.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from dicomscu.transport.ports import free_port  # noqa: F401 (for the tests: outside the ephemeral range, see there)

DCMTK = Path("/usr/bin")


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"peer exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def need(binary: str) -> str:
    path = shutil.which(binary, path=str(DCMTK)) or shutil.which(binary, path="/usr/sbin:/usr/bin")
    if path is None:
        if os.environ.get("CI"):
            raise RuntimeError(f"{binary} is required in CI (installed by .ci/run)")
        pytest.skip(f"{binary} is not installed (apt-get install dcmtk orthanc)")
    return path


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class StoreSCP:
    """DCMTK storescp writing what it receives into `directory`."""

    def __init__(self, directory: Path, *extra: str, aetitle: str = "STORESCP") -> None:
        self.port = free_port()
        self.aetitle = aetitle
        self.directory = directory
        self.log = directory.parent / f"storescp-{self.port}.log"
        directory.mkdir(parents=True, exist_ok=True)
        args = [need("storescp"), "-aet", aetitle, "-od", str(directory), "-v", *extra, str(self.port)]
        self.process = subprocess.Popen(args, stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process)

    def received(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        stop(self.process)


class DcmQRSCP:
    """DCMTK dcmqrscp: an archive with one AE (storage area in `workdir`), loaded by C-STORE."""

    def __init__(self, workdir: Path, aetitle: str = "DCMQRSCP", hosts: dict | None = None) -> None:
        self.port = free_port()
        self.aetitle = aetitle
        storage = workdir / "db"
        storage.mkdir(parents=True, exist_ok=True)
        host_lines = "\n".join(f"{name} = ({ae}, 127.0.0.1, {port})" for name, (ae, port) in (hosts or {}).items())
        # (2000, 1024mb): dcmqrscp silently deletes the oldest studies beyond the first number.
        config = f"""NetworkTCPPort = {self.port}
MaxPDUSize = 16384
MaxAssociations = 16
HostTable BEGIN
{host_lines}
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
{aetitle} {storage} RW (2000, 1024mb) ANY
AETable END
"""
        self.config = workdir / "dcmqrscp.cfg"
        self.config.write_text(config)
        self.log = workdir / "dcmqrscp.log"
        self.process = subprocess.Popen([need("dcmqrscp"), "-c", str(self.config), "-v"],
                                        stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process)

    def close(self) -> None:
        stop(self.process)


class Orthanc:
    """The Orthanc PACS with a generated configuration in a temp dir."""

    #: Debian's orthanc-dicomweb plugin (DICOMweb under /dicom-web/).
    DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

    def __init__(self, workdir: Path, aetitle: str = "ORTHANC", modalities: dict | None = None,
                 dicomweb: bool = False, **settings) -> None:
        self.dicom_port = free_port()
        self.http_port = free_port()
        self.aetitle = aetitle
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "dicomscu-test",
            "DicomAet": aetitle,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            "StorageDirectory": str(workdir / "storage"),
            "IndexDirectory": str(workdir / "index"),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True,
            "DicomModalities": modalities or {},
            "Plugins": [self.DICOMWEB_PLUGIN] if dicomweb else [],
            "DicomWeb": {"Enable": dicomweb, "Root": "/dicom-web/"},
            "StableAge": 1,
            "ConcurrentJobs": 2,
            **settings,  # (any other Orthanc setting, e.g. DicomScpTimeout)
        }
        path = workdir / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        self.log = workdir / "orthanc.log"
        self.process = subprocess.Popen([need("Orthanc"), str(path)], stdout=self.log.open("w"),
                                        stderr=subprocess.STDOUT, cwd=workdir)
        wait_for_port(self.http_port, self.process, timeout=60)
        wait_for_port(self.dicom_port, self.process, timeout=60)

    @property
    def dicomweb_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def rest(self, path: str, method: str = "GET", body: bytes | None = None):
        request = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
        return json.loads(data) if data else None

    def instance_uids(self) -> set[str]:
        uids = set()
        for orthanc_id in self.rest("/instances"):
            tags = self.rest(f"/instances/{orthanc_id}/simplified-tags")
            uids.add(tags["SOPInstanceUID"])
        return uids

    def clear(self) -> None:
        for patient in self.rest("/patients"):
            self.rest(f"/patients/{patient}", method="DELETE")

    def close(self) -> None:
        stop(self.process)


@contextmanager
def pynetdicom_scp(ae_title: str, contexts: list[tuple[str, list[str] | None]], event, handler):
    """A pynetdicom SCP on a free loopback port, `handler` bound to `event`; yields the port."""
    from pynetdicom import AE

    ae = AE(ae_title=ae_title)
    for sop_class, syntaxes in contexts:
        if syntaxes:
            ae.add_supported_context(sop_class, syntaxes)
        else:
            ae.add_supported_context(sop_class)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(event, handler)])
    try:
        yield port
    finally:
        server.shutdown()


def storage_scp(ae_title: str, sop_classes, on_store, syntaxes=("1.2.840.10008.1.2",)):
    """A pynetdicom Storage SCP on a free loopback port: `on_store(event)` returns each status."""
    from pynetdicom import evt

    return pynetdicom_scp(ae_title, [(uid, list(syntaxes)) for uid in sop_classes], evt.EVT_C_STORE, on_store)


def find_scp(ae_title: str, on_find):
    """A pynetdicom C-FIND SCP (patient and study root) on a free loopback port: `on_find(event)` yields."""
    from pynetdicom import evt
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
    )

    contexts = [(PatientRootQueryRetrieveInformationModelFind, None), (StudyRootQueryRetrieveInformationModelFind, None)]
    return pynetdicom_scp(ae_title, contexts, evt.EVT_C_FIND, on_find)


@contextmanager
def silent_listener(accept: bool = True, script=None):
    """A TCP listener on loopback that misbehaves: accepts and stays silent, or runs `script(conn)`."""
    import threading

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]
    connections = []
    stop_flag = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop_flag.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            connections.append(conn)
            if script is not None:
                threading.Thread(target=script, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    if accept:
        thread.start()
    try:
        yield port
    finally:
        stop_flag.set()
        if accept:
            thread.join(timeout=2)
        for conn in connections:
            conn.close()
        server.close()
