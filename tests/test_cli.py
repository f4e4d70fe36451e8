"""Parsing: every gdcmscu example of the manual gives the intended request."""

from __future__ import annotations

import shlex

import pytest

from dicomscu.cli.parser import parse
from dicomscu.errors import UsageError

from conftest import run_inprocess as run_dicomscu  # the command line, in-process (tests/test_app.py: the environment)


def p(line: str, environ=None):
    return parse(shlex.split(line), environ=environ or {})


def test_echo_default_operation_and_port():
    r = p("dicom.example.com")
    assert (r.operation, r.peer.host, r.peer.port) == ("echo", "dicom.example.com", 104)
    assert (r.peer.calling_ae, r.peer.called_ae) == ("GDCMSCU", "ANY-SCP")


def test_echo_explicit():
    r = p("--echo dicom.example.com 104")
    assert (r.operation, r.peer.port) == ("echo", 104)


def test_called_and_calling_ae():
    r = p("--echo dicom.example.com 11112 --call SERVSCP --aetitle MYSCU")
    assert (r.peer.port, r.peer.called_ae, r.peer.calling_ae) == (11112, "SERVSCP", "MYSCU")


def test_store_positional_files():
    r = p("--store dicom.example.com 104 myfile1.dcm myfile2.dcm myfile3.dcm")
    assert r.operation == "store"
    assert r.files == ["myfile1.dcm", "myfile2.dcm", "myfile3.dcm"]


def test_store_with_input_option():
    r = p("--store dicom.example.com 104 -i myfile.dcm")
    assert r.files == ["myfile.dcm"] and r.peer.port == 104


def test_store_input_repeatable_and_recursive():
    r = p("--store -r -i a -i b host 11112 c")
    assert r.files == ["a", "b", "c"] and r.store.recursive


def test_find_gdcm_key_form():
    r = p('--find --patient dicom.example.com 11112 --patientroot --key 10,10,"A*"')
    assert (r.operation, r.level, r.model) == ("find", "patient", "patientroot")
    assert r.keys == ["10,10,A*"]


def test_find_dcmtk_key_form_and_return_key():
    r = p('--find --patient dicom.example.com 11112 --call MI2B2 --patientroot -k 10,10="A*" -k 10,20')
    assert r.keys == ["10,10=A*", "10,20"] and r.peer.called_ae == "MI2B2"


def test_move_example():
    r = p('--move --patient --aetitle ACME1 --call ACME_STORE dicom.example.com 5678 '
          '--patientroot -k 10,20="ABCD1234" --port-scp 1234')
    assert (r.operation, r.retrieve.port_scp, r.peer.port, r.peer.calling_ae) == ("move", 1234, 5678, "ACME1")


def test_image_level_and_store_query():
    r = p("--find --patientroot --image --key 8,18=1.2.3.4.5.6 dicom.example.com 11112 --key 10,20 --key 20,d")
    assert r.level == "image" and r.keys == ["8,18=1.2.3.4.5.6", "10,20", "20,d"]
    r = p('--find --patient --patientroot dicom.example.com 11112 --key 10,20="*" --key 10,10 '
          '--store-query query.dcm')
    assert r.store_query == "query.dcm"


def test_hostname_and_port_options():
    r = p("-H pacs -p 11112")
    assert (r.peer.host, r.peer.port) == ("pacs", 11112)


def test_log_levels():
    assert p("-D h").log_level == "debug"
    assert p("-V h").log_level == "verbose"
    assert p("-E h").log_level == "error"
    assert p("-W h").log_level == "warning"
    assert p("-L log.txt h").log_file == "log.txt"


def test_help_and_version_need_no_host():
    assert p("-h").action == "help"
    assert p("--version").action == "version"
    assert p("-v").action == "version"


def test_root_uid_option_and_environment():
    assert p("--root-uid 1.2.3 h").root_uid == "1.2.3"
    assert p("h", environ={"GDCM_ROOT_UID": "1.2.826.0.1"}).root_uid == "1.2.826.0.1"
    with pytest.raises(UsageError, match="GDCM_ROOT_UID"):
        p("h", environ={"GDCM_ROOT_UID": "1.02.x"})
    with pytest.raises(UsageError, match="root-uid"):
        p("--root-uid 1..2 h")


def test_timeouts_and_max_pdu():
    r = p("--timeout 3 --dimse-timeout 7 --max-pdu 16384 h")
    t = r.peer.timeouts
    assert (t.connect, t.association, t.dimse, t.network) == (3, 3, 7, 3)
    assert r.peer.max_pdu == 16384


@pytest.mark.parametrize(
    "line, message",
    [
        ("", "hostname missing"),
        ("h notaport", "port: 'notaport' is not a number"),
        ("h 0", "out of range"),
        ("h 70000", "out of range"),
        ("--store h 104", "--store needs files"),
        ("--echo --store h 104 f", "choose one operation"),
        ("--find --studyroot --patient h", "--patient cannot be used with --studyroot"),
        ("--aetitle 12345678901234567 h", "1 to 16 characters"),
        ("--port-scp x h", "--port-scp"),
        ("--bogus h", "unrecognized arguments"),
        ("h 104 file.dcm", "only sent with --store"),
        ("--timeout -1 h", "positive"),
    ],
)
def test_usage_errors(line, message):
    with pytest.raises(UsageError, match=message):
        p(line)


def test_usage_error_exit_code_and_one_line():
    result = run_dicomscu("h", "notaport")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0] == "dicomscu: error: port: 'notaport' is not a number"


def test_help_lists_every_gdcmscu_option():
    result = run_dicomscu("--help")
    assert result.returncode == 0
    for option in ["--hostname", "--port", "--aetitle", "--call", "--echo", "--store", "--find", "--move",
                   "--get", "--input", "--recursive", "--store-query", "--patientroot", "--studyroot",
                   "--worklist", "--patient", "--study", "--series", "--image", "--key", "--output",
                   "--port-scp", "--root-uid", "--verbose", "--warning", "--error", "--debug", "--log-file",
                   "--queryhelp", "--help", "--version", "--timeout", "--max-pdu"]:
        assert option in result.stdout, option


def test_retrieve_without_its_unique_key_says_what_to_add():
    """No level option means STUDY (as the gdcmscu binary): its unique key is asked for, before any traffic."""
    result = run_dicomscu("--move", "localhost", "11112", "--port-scp", "11999", "-k", "10,20=X")
    assert result.returncode == 2
    assert "STUDY level needs a value for StudyInstanceUID: add -k StudyInstanceUID=VALUE" in result.stderr
    assert "Traceback" not in result.stderr


def test_sizes_read_as_the_progress_bar_writes_them():
    from rich.filesize import decimal

    from dicomscu.output.text import human_size

    for size in (0, 1, 2, 999, 1000, 1049, 999_999, 1_000_000, 12_345_678, 3 * 10**9, 7 * 10**12):
        assert human_size(size) == decimal(size), size


def test_log_file_is_truncated_and_an_unwritable_one_is_a_usage_error(tmp_path):
    log = tmp_path / "trace.log"
    log.write_text("an older run\n" * 100)
    result = run_dicomscu("-L", str(log), "-V", "127.0.0.1", "1", "--timeout", "2")
    assert "an older run" not in log.read_text()
    assert result.returncode == 3
    bad = run_dicomscu("-L", str(tmp_path / "no" / "such" / "dir" / "x.log"), "127.0.0.1", "1")
    assert bad.returncode == 2 and "-L " in bad.stderr and "internal error" not in bad.stderr


@pytest.mark.parametrize("args, message", [
    (["--queryhlp"], "did you mean --queryhelp?"),
    (["--find", "-k", "PatientNme=x", "127.0.0.1"], "did you mean PatientName?"),
    (["--stor", "127.0.0.1"], "ambiguous option: --stor could match --store, --store-query"),
])
def test_misspellings_get_a_suggestion(args, message):
    result = run_dicomscu(*args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_unambiguous_prefixes_of_long_options_work_as_with_getopt():
    assert run_dicomscu("--versi").stdout.startswith("dicomscu ")
    assert "Study Root" in run_dicomscu("--queryh", "--studyr").stdout


def test_keys_as_gdcmscu_reads_them():
    """0x prefixes (sscanf %x), private tags (text), and the first of a duplicated key wins."""
    from dicomscu.query.build import build_query

    query = build_query("patientroot", "patient", ["0x0010,0x0020=ABC", "PatientID=XYZ", "0x0009,0x0010=ACME",
                                                    "0009,1001=v", "(0x0010,0x0010)=A*"], charset="")
    ds = query.dataset
    assert ds.PatientID == "ABC" and ds.PatientName == "A*"
    assert ds[0x00090010].value == "ACME" and ds[0x00091001].value == "v"
    first_return = build_query("patientroot", "patient", ["PatientName", "PatientName=A*"], charset="").dataset
    assert first_return.PatientName in ("", None)


def test_worklist_alone_is_the_worklist_query_and_store_query_is_written_for_move(tmp_path):
    from dicomscu.cli.parser import parse

    assert parse(["--worklist", "127.0.0.1", "11112"]).operation == "find"
    assert parse(["127.0.0.1", "11112"]).operation == "echo"
    query = tmp_path / "move-query.dcm"
    result = run_dicomscu("--move", "--study", "--studyroot", "127.0.0.1", "1", "-k", "StudyInstanceUID=1.2.3",
                          "--move-dest", "ELSEWHERE", "--store-query", str(query), "--timeout", "2")
    assert result.returncode == 3  # nothing listens on port 1; the query file was written before connecting
    import pydicom

    assert pydicom.dcmread(query).StudyInstanceUID == "1.2.3"
