"""One options object per operation (dicomscu/operations/options.py, RetrieveOptions), shared by the command line
and the Python API and checked in one place: the same bad value fails the same way from both, the command line
fills the very objects the API takes from its option table, and the API's keywords are the same fields."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

import dicomscu
from dicomscu.cli.options import OPTIONS
from dicomscu.cli.parser import parse
from dicomscu.operations.options import CommitOptions, FindOptions, StoreOptions, given

ROOT = Path(__file__).resolve().parents[1]
PEER = dicomscu.Peer("127.0.0.1", 1)

#: Fields the command line fills from something else than an option of the same api name, each said why.
COMPUTED = {
    (dicomscu.RetrieveOptions, "output"): "-o DIR, made ready (created) when the retrieval starts",
    (dicomscu.RetrieveOptions, "tag"): "a cluster run's own mark, never the user's",
    (CommitOptions, "timeout"): "--commit-timeout, through StoreOptions.commitment (--timeout is the peer's)",
    (CommitOptions, "batch"): "the library's request size",
    (CommitOptions, "root_uid"): "--root-uid or GDCM_ROOT_UID",
}


@pytest.mark.parametrize("kind", [StoreOptions, FindOptions, dicomscu.RetrieveOptions, CommitOptions])
def test_every_field_is_an_option_of_the_table_or_said_to_be_computed(kind):
    apis = {option.api for option in OPTIONS}
    for field in dataclasses.fields(kind):
        assert field.name in apis or (kind, field.name) in COMPUTED, f"{kind.__name__}.{field.name}"


def test_the_command_line_fills_the_objects_the_api_takes():
    request = parse("--store -r -j 4 --journal j.sqlite --decompress --commit --commit-timeout 9 --port-scp 1104 "
                    "h 104 f.dcm".split())
    assert request.store == StoreOptions(recursive=True, decompress=True, jobs=4, journal="j.sqlite", commit=True,
                                         commit_timeout=9.0, port_scp=1104)
    assert request.store.commitment == CommitOptions(port_scp=1104, timeout=9.0, journal="j.sqlite")
    request = parse("--find --limit 5 h 104".split())
    assert request.find == FindOptions(limit=5)
    request = parse("--get -o out --layout hierarchical --accept-all-syntaxes --skip-existing -j 3 h 104".split())
    assert request.retrieve == dicomscu.RetrieveOptions(output="out", layout="hierarchical", accept_all_syntaxes=True,
                                                        skip_existing=True, jobs=3)
    request = parse(["--move", "--move-dest", " ARCHIVE ", "--port-scp", "1105", "h", "104"])
    assert request.retrieve.move_destination == "ARCHIVE" and request.retrieve.port_scp == 1105
    request = parse("--commit --port-scp 1106 --root-uid 1.2.3 h 104 f.dcm".split())
    assert request.commitment == CommitOptions(port_scp=1106, root_uid="1.2.3")


@pytest.mark.parametrize("line, api, flag_message", [
    ("--store -j 40 h 104 f", dict(jobs=40), "--jobs 40: give 1 to 32 parallel associations"),
    ("--store -j 0 h 104 f", dict(jobs=0), "--jobs 0: give 1 to 32 parallel associations"),
    ("--store --commit --commit-timeout -1 h 104 f", dict(commit=True, commit_timeout=-1.0),
     "--commit-timeout -1.0: give a positive number of seconds"),
    ("--store --port-scp 70000 h 104 f", dict(port_scp=70000), "--port-scp 70000 is out of range (1-65535)"),
])
def test_a_bad_value_fails_the_same_from_the_command_line_and_from_python(line, api, flag_message, tmp_path):
    with pytest.raises(dicomscu.UsageError) as from_cli:
        parse(line.split())
    assert str(from_cli.value) == flag_message
    (tmp_path / "f.dcm").write_bytes(b"")
    with pytest.raises(dicomscu.UsageError) as from_api:  # before anything is read or sent
        dicomscu.store(PEER, [str(tmp_path / "f.dcm")], **api)
    assert from_api.value.option in api and str(from_api.value) == flag_message.replace(
        "--" + from_api.value.option.replace("_", "-"), from_api.value.option)
    with pytest.raises(dicomscu.UsageError):
        StoreOptions(**api)


@pytest.mark.parametrize("make, option", [
    (lambda: FindOptions(limit=0), "limit"),
    (lambda: FindOptions(limit="5"), "limit"),  # type: ignore[arg-type]
    (lambda: StoreOptions(jobs="4"), "jobs"),  # type: ignore[arg-type]
    (lambda: StoreOptions(jobs=True), "jobs"),
    (lambda: StoreOptions(recursive="yes"), "recursive"),  # type: ignore[arg-type]
    (lambda: StoreOptions(journal=42), "journal"),  # type: ignore[arg-type]
    (lambda: CommitOptions(timeout=0), "commit_timeout"),
    (lambda: CommitOptions(batch=0), "commit_batch"),
    (lambda: CommitOptions(port_scp="104"), "port_scp"),  # type: ignore[arg-type]
    (lambda: dicomscu.RetrieveOptions(layout="tree"), "layout"),  # type: ignore[arg-type]
    (lambda: dicomscu.RetrieveOptions(move_destination="X" * 17), "move_destination"),
    (lambda: dicomscu.RetrieveOptions(output=None), "output"),  # type: ignore[arg-type]
    (lambda: dicomscu.RetrieveOptions(jobs=33), "jobs"),
])
def test_each_object_refuses_what_its_operation_cannot_do_naming_the_field(make, option):
    with pytest.raises(dicomscu.UsageError) as refused:
        make()
    assert refused.value.option == option


def test_keywords_are_the_same_fields_and_override_the_object():
    base = StoreOptions(recursive=True, jobs=2)
    assert given(base, StoreOptions, jobs=5) == StoreOptions(recursive=True, jobs=5)
    assert given(base, StoreOptions, jobs=None) is base
    assert given(None, FindOptions, limit=3) == FindOptions(limit=3)
    with pytest.raises(dicomscu.UsageError, match="give a StoreOptions"):
        given(FindOptions(), StoreOptions)  # type: ignore[type-var]
    with pytest.raises(dicomscu.UsageError, match="give a FindOptions"):
        dicomscu.find(PEER, dicomscu.build_query("studyroot", "study", []), StoreOptions())  # type: ignore


def test_an_options_object_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        StoreOptions().jobs = 4  # type: ignore[misc]


def test_a_wrong_options_object_is_a_type_error(tmp_path):
    (tmp_path / "wrong.py").write_text(
        "import dicomscu\n\n"
        'peer, query = dicomscu.Peer("pacs"), dicomscu.build_query("studyroot", "study", [])\n'
        'dicomscu.store(peer, ["a.dcm"], dicomscu.StoreOptions(recursive=True, jobs=4))\n'
        "dicomscu.find(peer, query, dicomscu.FindOptions(limit=3))\n"
        'dicomscu.commit(peer, [], dicomscu.CommitOptions(port_scp=1104))\n'
        'dicomscu.store(peer, ["a.dcm"], dicomscu.FindOptions())\n'  # line 7: wrong
        "dicomscu.find(peer, query, dicomscu.StoreOptions())\n"  # line 8: wrong
        'dicomscu.StoreOptions(jobs="4")\n')  # line 9: wrong
    result = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-incremental",
                             "--cache-dir", str(tmp_path / ".mypy"), "wrong.py"], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "MYPYPATH": str(ROOT / "src")})
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert sorted({line.split(":")[1] for line in errors}) == ["7", "8", "9"], result.stdout
