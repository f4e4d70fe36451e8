"""Server profiles (@name) and JSON summaries for scripts."""

from __future__ import annotations

import json
import os

import pytest

from dicomscu.cli.parser import parse
from dicomscu.errors import UsageError

from conftest import run_dicomscu


@pytest.fixture
def profiles(tmp_path):
    path = tmp_path / "servers.toml"
    path.write_text('[pacs]\nhost = "127.0.0.1"\nport = 11999\ncall = "PACS"\naetitle = "ME"\ntimeout = 7\n'
                    '\n[other]\nhost = "other.example"\n')
    return path


def test_profile_resolution_and_override_order(profiles):
    request = parse(["--find", "@pacs", "--config", str(profiles)], environ={})
    peer = request.peer
    assert (peer.host, peer.port, peer.called_ae, peer.calling_ae) == ("127.0.0.1", 11999, "PACS", "ME")
    assert peer.timeouts.dimse == 7
    overridden = parse(["--find", "@pacs", "--config", str(profiles), "--call", "X", "-p", "1234",
                        "--dimse-timeout", "3"], environ={})
    assert (overridden.peer.called_ae, overridden.peer.port, overridden.peer.timeouts.dimse) == ("X", 1234, 3)
    assert overridden.peer.calling_ae == "ME"
    defaults = parse(["@other", "--config", str(profiles)], environ={})
    assert (defaults.peer.port, defaults.peer.called_ae, defaults.peer.calling_ae) == (104, "ANY-SCP", "GDCMSCU")


def test_profile_files_follow_the_name(profiles):
    request = parse(["--store", "@pacs", "a.dcm", "b.dcm", "--config", str(profiles)], environ={})
    assert request.files == ["a.dcm", "b.dcm"] and request.peer.port == 11999


def test_default_profile_file_location(profiles, tmp_path):
    target = tmp_path / "cfg" / "dicomscu"
    target.mkdir(parents=True)
    (target / "servers.toml").write_text(profiles.read_text())
    request = parse(["@pacs"], environ={"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert request.peer.called_ae == "PACS"


def test_unknown_profile_and_bad_file(profiles, tmp_path):
    with pytest.raises(UsageError, match="unknown server profile @nope"):
        parse(["@nope", "--config", str(profiles)], environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[x]\nport = 1\n")
    with pytest.raises(UsageError, match="needs a host"):
        parse(["@x", "--config", str(bad)], environ={})
    bad.write_text('[x]\nhost = "h"\ncolour = "blue"\n')
    with pytest.raises(UsageError, match="unknown setting"):
        parse(["@x", "--config", str(bad)], environ={})


def test_list_servers(profiles):
    result = run_dicomscu("--list-servers", "--config", str(profiles))
    assert result.returncode == 0
    assert "@pacs: PACS@127.0.0.1:11999 as ME" in result.stdout and "@other" in result.stdout


def test_echo_and_store_json_summaries(storescp, dataset_dir, tmp_path):
    echo = run_dicomscu("127.0.0.1", str(storescp.port), "--format", "json")
    assert json.loads(echo.stdout)["status"]["category"] == "success"
    junk = tmp_path / "junk.txt"
    junk.write_text("junk")
    files = [str(p) for p in sorted((dataset_dir / "small").iterdir())[:3]] + [str(junk)]
    store = run_dicomscu("--store", "127.0.0.1", str(storescp.port), "--format", "json", *files)
    assert store.returncode == 1
    document = json.loads(store.stdout)
    assert document["summary"]["stored"] == 3 and document["summary"]["skipped"] == 1
    outcomes = {os.path.basename(f["path"]): f["outcome"] for f in document["files"]}
    assert outcomes["junk.txt"] == "skipped" and list(outcomes.values()).count("ok") == 3
    assert all(f["status"] is None or f["status"]["hex"] == "0x0000" for f in document["files"])


def test_store_with_profile_end_to_end(storescp, dataset_dir, tmp_path):
    config = tmp_path / "servers.toml"
    config.write_text(f'[scp]\nhost = "127.0.0.1"\nport = {storescp.port}\ncall = "{storescp.aetitle}"\n')
    files = [str(p) for p in sorted((dataset_dir / "small").iterdir())[:2]]
    result = run_dicomscu("--store", "@scp", *files, "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert len(storescp.received()) == 2


def test_parallel_store_every_instance_once(clean_orthanc, dataset_dir):
    import pydicom

    result = run_dicomscu("--store", "127.0.0.1", str(clean_orthanc.dicom_port), "--call", clean_orthanc.aetitle,
                          "-j", "4", "-r", str(dataset_dir), "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["summary"]["stored"] == 66
    paths = [f["path"] for f in document["files"]]
    assert len(paths) == len(set(paths)) == 66  # each file sent once, by one association
    expected = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in dataset_dir.rglob("*.dcm")}
    assert clean_orthanc.instance_uids() == expected


def test_jobs_bounds():
    with pytest.raises(UsageError, match="--jobs 0"):
        parse(["--store", "-j", "0", "h", "104", "f"], environ={})


@pytest.fixture
def slow_scp():
    """A pynetdicom storage SCP taking 50 ms per file, counting what it receives."""
    import time as _time
    from collections import Counter

    from pynetdicom.sop_class import SecondaryCaptureImageStorage

    from peers import storage_scp

    received = Counter()

    def on_store(event):
        _time.sleep(0.05)
        received[event.request.AffectedSOPInstanceUID] += 1
        return 0x0000

    with storage_scp("SLOW", [SecondaryCaptureImageStorage], on_store) as port:
        yield port, received


@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_journal_resumes_after_interruption(slow_scp, dataset_dir, tmp_path, how):
    import signal
    import subprocess
    import sys
    import time as _time

    port, received = slow_scp
    journal = tmp_path / "journal.sqlite"
    args = [sys.executable, "-m", "dicomscu", "--store", "127.0.0.1", str(port), "--journal", str(journal),
            str(dataset_dir / "small")]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = _time.monotonic() + 30
    while sum(received.values()) < 5 and _time.monotonic() < deadline:  # part-way, however slow the machine
        _time.sleep(0.05)
    process.send_signal(getattr(signal, how))
    process.communicate(timeout=30)
    first = sum(received.values())
    assert 0 < first < 60
    again = run_dicomscu("--store", "127.0.0.1", str(port), "--journal", str(journal), str(dataset_dir / "small"))
    assert again.returncode == 0, again.stderr
    assert "already stored (journal)" in again.stdout
    assert len(received) == 60  # every instance arrived
    assert sum(received.values()) <= 61  # at most the one in flight at the interruption was sent twice
    third = run_dicomscu("--store", "127.0.0.1", str(port), "--journal", str(journal), str(dataset_dir / "small"))
    assert third.returncode == 0 and "60 already stored" in third.stdout
    assert sum(received.values()) <= 61


@pytest.fixture(scope="module")
def loaded_serve(tmp_path_factory, dataset_dir):
    from test_serve import Serve

    import dicomscu

    server = Serve(tmp_path_factory.mktemp("bulk") / "storage")
    assert dicomscu.store(server.peer, [str(dataset_dir)], recursive=True).ok
    yield server
    server.close()


def _uids(folder):
    import pydicom

    return {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in folder.rglob("*.dcm")}


def test_find_then_get_retrieves_exactly_the_matches(loaded_serve, dataset_dir, tmp_path):
    import pydicom

    first = pydicom.dcmread(sorted((dataset_dir / "small").iterdir())[0], stop_before_pixels=True)
    out = tmp_path / "then"
    result = run_dicomscu("--find", "--series", "--studyroot", "127.0.0.1", str(loaded_serve.port), "--call",
                          "DICOMSCU", "-k", f"StudyInstanceUID={first.StudyInstanceUID}", "--format", "json",
                          "--then", "get", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)  # stdout holds only the answers; the summaries are on stderr
    assert "C-GET" in result.stderr
    expected = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in dataset_dir.rglob("*.dcm")
                if pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID == first.StudyInstanceUID}
    assert _uids(out) == expected
    explicit = tmp_path / "explicit"
    assert run_dicomscu("--get", "--study", "--studyroot", "127.0.0.1", str(loaded_serve.port), "--call", "DICOMSCU",
                        "-k", f"20,d={first.StudyInstanceUID}", "-o", str(explicit)).returncode == 0
    assert _uids(explicit) == _uids(out)


def test_get_from_json_on_stdin(loaded_serve, tmp_path):
    base = ["127.0.0.1", str(loaded_serve.port), "--call", "DICOMSCU"]
    found = run_dicomscu("--find", "--patient", *base, "-k", "PatientID=PID000?", "--format", "json")
    answers = json.loads(found.stdout)
    assert len(answers) == 4
    out = tmp_path / "fromjson"
    result = run_dicomscu("--get", *base, "--from-json", "-", "-o", str(out), input=json.dumps(answers[:2]))
    assert result.returncode == 0, result.stderr
    ids = {a["00100020"]["Value"][0] for a in answers[:2]}
    import pydicom

    assert {pydicom.dcmread(p, stop_before_pixels=True).PatientID for p in out.rglob("*.dcm")} == ids


def test_from_json_rejects_bad_input(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}')
    result = run_dicomscu("--get", "127.0.0.1", "11112", "--from-json", str(bad))
    assert result.returncode == 2 and "expected a JSON array" in result.stderr


def test_parallel_get_splits_by_series(loaded_serve, dataset_dir, tmp_path):
    import pydicom

    first = pydicom.dcmread(sorted((dataset_dir / "small").iterdir())[0], stop_before_pixels=True)
    base = ["127.0.0.1", str(loaded_serve.port), "--call", "DICOMSCU"]
    one, four = tmp_path / "one", tmp_path / "four"
    key = f"PatientID={first.PatientID}"
    assert run_dicomscu("--get", "--patient", *base, "-k", key, "-o", str(one)).returncode == 0
    result = run_dicomscu("--get", "--patient", *base, "-k", key, "-o", str(four), "-j", "4", "--format", "json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert _uids(four) == _uids(one) and summary["written"] == len(_uids(one)) > 1


@pytest.fixture
def slow_qr_scp(dataset_dir):
    """A pynetdicom FIND/GET SCP over the 60 small files, 50 ms per C-GET sub-operation."""
    import time as _time

    import pydicom
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelGet,
        SecondaryCaptureImageStorage,
    )

    from peers import free_port

    instances = [pydicom.dcmread(p) for p in sorted((dataset_dir / "small").iterdir())]
    sent = []

    def selected(identifier):
        wanted = identifier.get("SOPInstanceUID")
        wanted = set(wanted) if isinstance(wanted, (list, pydicom.multival.MultiValue)) else (
            {wanted} if wanted else None)
        return [ds for ds in instances if wanted is None or ds.SOPInstanceUID in wanted]

    def on_find(event):
        for ds in selected(event.identifier):
            answer = pydicom.Dataset()
            answer.QueryRetrieveLevel = "IMAGE"
            for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
                setattr(answer, keyword, getattr(ds, keyword))
            yield 0xFF00, answer

    def on_get(event):
        chosen = selected(event.identifier)
        yield len(chosen)
        for ds in chosen:
            _time.sleep(0.05)
            sent.append(ds.SOPInstanceUID)
            yield 0xFF00, ds

    ae = AE(ae_title="SLOWQR")
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(PatientRootQueryRetrieveInformationModelGet)
    ae.add_supported_context(SecondaryCaptureImageStorage, scu_role=True, scp_role=True)
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_FIND, on_find), (evt.EVT_C_GET, on_get)])
    yield port, sent, {ds.SOPInstanceUID for ds in instances}
    server.shutdown()


def test_killed_get_resumes_with_skip_existing(slow_qr_scp, tmp_path):
    import signal
    import subprocess
    import sys
    import time as _time

    port, sent, everything = slow_qr_scp
    out = tmp_path / "out"
    args = [sys.executable, "-m", "dicomscu", "--get", "--patient", "127.0.0.1", str(port), "-k", "PatientID=X",
            "-o", str(out), "--skip-existing"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = _time.monotonic() + 30
    while len(sent) < 10 and _time.monotonic() < deadline:
        _time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    first = set(_uids(out))
    assert 0 < len(first) < 60
    import pydicom

    for path in out.glob("*.dcm"):  # a kill may leave a .part behind, never a cut .dcm
        assert len(pydicom.dcmread(path).PixelData) == 32 * 32 * 2
    _time.sleep(1)  # let the server notice the dead association before counting again
    sent.clear()
    again = run_dicomscu("--get", "--patient", "127.0.0.1", str(port), "-k", "PatientID=X", "-o", str(out),
                         "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert _uids(out) == everything
    assert len(sent) <= 60 - len(first)  # only what was missing was sent again


def test_parallel_move_to_our_scp(loaded_serve, dataset_dir, tmp_path):
    """-j 3 C-MOVE: three associations, one SCP of ours, every instance of the patient once."""
    import pydicom

    from peers import free_port

    first = pydicom.dcmread(sorted((dataset_dir / "small").iterdir())[0], stop_before_pixels=True)
    expected = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in dataset_dir.rglob("*.dcm")
                if pydicom.dcmread(p, stop_before_pixels=True).PatientID == first.PatientID}
    port_scp = free_port()
    from test_serve import Serve

    server = Serve(tmp_path / "storage", "--dest", f"MOVER=127.0.0.1:{port_scp}")
    try:
        import dicomscu

        assert dicomscu.store(server.peer, [str(dataset_dir)], recursive=True).ok
        out = tmp_path / "out"
        result = run_dicomscu("--move", "--patient", "127.0.0.1", str(server.port), "--call", "DICOMSCU",
                              "--aetitle", "MOVER", "--port-scp", str(port_scp), "-k", f"PatientID={first.PatientID}",
                              "-o", str(out), "-j", "3", "--format", "json")
    finally:
        server.close()
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert _uids(out) == expected and summary["written"] == summary["completed"] == len(expected)


@pytest.mark.parametrize("line, message", [
    ('timeout = "fast"', 'timeout = \'fast\': expected a number of seconds'),
    ('tls = "no"', "tls = 'no': expected true or false"),
    ("port = true", "port = True: expected a whole number"),
    ("timeout = -3", "timeout = -3: expected a positive number"),
])
def test_profile_settings_of_the_wrong_type_are_named(tmp_path, line, message):
    config = tmp_path / "servers.toml"
    config.write_text(f'[pacs]\nhost = "127.0.0.1"\nport = 11999\n{line}\n'.replace("port = 11999\nport", "port"))
    result = run_dicomscu("@pacs", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert str(config) in result.stderr and "[pacs]" in result.stderr and message in result.stderr


def test_a_binary_profile_file_is_a_usage_error(tmp_path):
    config = tmp_path / "servers.toml"
    config.write_bytes(bytes(range(256)) * 4)
    result = run_dicomscu("@pacs", "--config", str(config))
    assert result.returncode == 2 and "internal error" not in result.stderr and str(config) in result.stderr
