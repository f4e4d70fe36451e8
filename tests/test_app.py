"""The application layer: one option table, errors with structured fields, an injected environment,
and the public Python API (one association for many operations, find as a generator)."""

from __future__ import annotations

import io

import pytest

import dicomscu
from dicomscu.app import main
from dicomscu.cli.environment import Environment
from dicomscu.cli.options import OPTIONS
from dicomscu.cli.parser import _build, flag_of
from dicomscu.errors import UsageError
from dicomscu.sample import SampleSpec, write_sample
from dicomscu.server.pacs import Pacs, ServerConfig

from conftest import run_inprocess
from peers import free_port


def test_every_option_has_its_help_and_every_help_line_an_option():
    from dicomscu.cli.help import HELP

    parsed = {flag for action in _build()._actions for flag in action.option_strings}
    tabled = {flag for option in OPTIONS for flag in option.flags}
    assert parsed == tabled
    for option in OPTIONS:
        assert option.help or option.label == "", f"{option.flags} has no help"
        assert any(flag in HELP for flag in option.flags), option.flags
    assert "  -j --jobs N           C-STORE" in HELP  # help text in one column


@pytest.mark.parametrize("command", ["serve", "sample"])
def test_serve_and_sample_read_and_describe_their_options_from_the_table(command):
    """One table per command: what argparse reads is what --help lists, and every library setting an error
    can name is spelled with its flag."""
    from dicomscu.cli import sample, serve
    from dicomscu.cli.options import SAMPLE_SECTIONS, SERVE_SECTIONS

    sections, text = (SERVE_SECTIONS, serve.HELP) if command == "serve" else (SAMPLE_SECTIONS, sample.HELP)
    options = [option for _, listed in sections for option in listed]
    for option in options:
        assert any(flag in text for flag in option.flags), option.flags
        if option.api:
            assert flag_of(option.api) in option.flags or option.api in ("port", "log_file"), option.api
    done = run_inprocess(command, "--help")
    assert done.returncode == 0 and done.stdout == text
    refused = run_inprocess(command, "--no-such-option")
    assert refused.returncode == 2


def test_library_errors_name_settings_and_the_cli_names_flags(tmp_path):
    missing = str(tmp_path / "nothing.pem")
    with pytest.raises(UsageError) as raised:
        dicomscu.TLS(ca=missing)
    assert raised.value.option == "tls_ca" and str(raised.value) == f"tls_ca {missing}: no such file or directory"
    assert raised.value.render(flag_of) == f"--tls-ca {missing}: no such file or directory"
    result = run_inprocess("--tls-ca", missing, "127.0.0.1")
    assert result.returncode == 2 and f"dicomscu: error: --tls-ca {missing}: no such file" in result.stderr
    with pytest.raises(UsageError) as raised:
        dicomscu.get(dicomscu.Peer("127.0.0.1", 1), dicomscu.build_query("worklist", None, []),
                     dicomscu.RetrieveOptions())
    assert "has no C-GET" in str(raised.value)


def test_the_environment_is_injected_not_global(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    code = main(["--version"], env=Environment(io.StringIO(), out, err, {}))
    assert code == 0 and out.getvalue().startswith("dicomscu ") and err.getvalue() == ""
    # the locale comes from the injected variables: a C locale declares Latin-1, as gdcmscu's does
    result = run_inprocess("--find", "--patient", "--patientroot", "-k", "10,10=Müller", "127.0.0.1", "1",
                           "--store-query", str(tmp_path / "q.dcm"), "--timeout", "1", environ={"LC_ALL": "C"})
    assert result.returncode == 3 and "connection refused" in result.stderr
    import pydicom

    assert pydicom.dcmread(tmp_path / "q.dcm").SpecificCharacterSet == "ISO_IR 100"
    # gdcmscu's name: the version on stdout, as gdcmscu prints it
    out, err = io.StringIO(), io.StringIO()
    assert dicomscu.app.main_as_gdcmscu(["--version"], Environment(io.StringIO(), out, err, {})) == 0
    assert err.getvalue() == "" and out.getvalue().startswith("dicomscu ")


def test_retrieve_options_default_output_is_usable(tmp_path, monkeypatch):
    from dicomscu.files.instances import InstanceWriter

    monkeypatch.chdir(tmp_path)
    options = dicomscu.RetrieveOptions()
    path = InstanceWriter(options.output, options.layout).path_for("1.2.3")
    assert path == str(tmp_path / "1.2.3.dcm")


@pytest.fixture
def filled_pacs(tmp_path):
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage")))
    server.start()
    files = write_sample(tmp_path / "sample", SampleSpec(patients=3, studies=2, series=1, images=1, matrix=8)).files
    peer = dicomscu.Peer("127.0.0.1", server.port, called_ae="DICOMSCU")
    assert dicomscu.store(peer, [str(f) for f in files]).stored == 6
    yield peer
    server.stop()


def test_one_association_for_many_operations_and_find_as_a_generator(filled_pacs):
    query = dicomscu.build_query("studyroot", "study", ["PatientID", "StudyInstanceUID"])
    with dicomscu.Association(filled_pacs, query_models=["studyroot", "patientroot"]) as assoc:
        assert assoc.echo().ok
        studies = list(assoc.find(query))
        assert len(studies) == 6 and all(study.StudyInstanceUID for study in studies)
        for first in assoc.find(query):  # stop after one: a C-CANCEL goes, the association stays usable
            break
        assert first.StudyInstanceUID in {study.StudyInstanceUID for study in studies}
        assert len(list(assoc.find(query, limit=2))) == 2
        patients = list(assoc.find(dicomscu.build_query("patientroot", "patient", ["PatientID"])))
        assert len(patients) == 3
        assert assoc.echo().ok
    with pytest.raises(dicomscu.UsageError):
        assoc.echo()  # outside its block


def test_store_query_writes_into_a_fifo_and_never_replaces_it(tmp_path):
    """``--store-query /dev/stdout`` (or a FIFO) is written into; renaming a file over it would replace the
    device itself (a root user's /dev/null)."""
    import os
    import threading

    fifo = tmp_path / "query.fifo"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    result = run_inprocess("--find", "--study", "127.0.0.1", "1", "--store-query", str(fifo), "--timeout", "1")
    reader.join(10)
    assert result.returncode == 3 and received and received[0][128:132] == b"DICM"
    assert fifo.is_fifo()
    from dicomscu.files.instances import write_atomically

    with pytest.raises(OSError, match="not a regular file"):
        write_atomically(fifo, [b"x"])
    assert fifo.is_fifo()


def test_an_interrupt_python_turned_into_another_error_is_still_an_interrupt(monkeypatch):
    """A Ctrl-C raised inside a class being made by an import reaches us as "RuntimeError: Error calling
    __set_name__": it is reported as the interrupt it is (exit 130), not as an internal error."""
    from conftest import run_inprocess

    from dicomscu.transport import interrupts

    def interrupted_import(request, env):
        try:
            interrupts.deliver(KeyboardInterrupt())  # raised at once, as outside a deferred region
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance") from exc

    monkeypatch.setattr(dicomscu.app, "run_echo", interrupted_import)
    result = run_inprocess("127.0.0.1", "1")
    assert result.returncode == 130 and "interrupted" in result.stderr and "internal error" not in result.stderr
    interrupts.check()  # nothing left pending
