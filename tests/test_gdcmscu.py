"""The identifier on the wire is gdcmscu's, byte for byte: the real gdcmscu is the oracle.

Debian's gdcmscu (libgdcm-tools) cannot connect here, but it writes its
``--store-query`` file before it tries to: for each command line below, in a
UTF-8 and in the C locale, the data set dicomscu writes (and sends) must equal
gdcmscu's, element by element (tag, VR, value).  Group 0002 may differ: ours is a
proper Part 10 file meta.
"""

from __future__ import annotations

import os
from pathlib import Path
import re
import shlex
import shutil
import subprocess

import pydicom
import pytest

from conftest import run_dicomscu, run_inprocess

COMMAND_LINES = [
    "--find --patientroot -k 10,20=X",
    "--find --patientroot --patient -k 10,10=A*",
    "--find --patientroot --patient -k 10,10 -k 10,20 -k 10,30",
    "--find --patientroot --study -k 10,20=PID1 -k 8,20=20240101-20241231",
    "--find --patientroot --series -k 10,20=PID1 -k 20,d=1.2.3 -k 8,60",
    "--find --patientroot --image -k 8,18=1.2.3",
    "--find --patientroot --image -k 10,20=P -k 20,d=1.2 -k 20,e=1.2.3 -k 20,13",
    "--find --studyroot -k 10,10=Doe*",
    "--find --studyroot --study -k 8,20 -k 8,30 -k 8,50=ACC*",
    "--find --studyroot --study -k 10,10 -k 10,10=Z",
    "--find --studyroot --series -k 20,d=1.2.3 -k 8,60",
    "--find --studyroot --series -k 20,d=1.2.3 -k 8,60=CT -k 20,11",
    "--find --studyroot --image -k 20,d=1.2 -k 20,e=1.2.3",
    "--find --studyroot --image -k 8,16 -k 8,18",
    "--find --studyroot --study -k 10,20=* -k 10,10=?oe",
    "--find --studyroot --study -k 8,61=CT",
    "--find --studyroot --study -k 9,10=ACME",
    "--find --studyroot --study -k 10,1010=030Y",
    "--find --studyroot --study -k 8,1030=Brain",
    "--move --patientroot -k 10,20=X --port-scp 11999",
    "--move --studyroot --study -k 20,d=1.2.3 --port-scp 11999",
    "--move --studyroot --series -k 20,d=1.2.3 -k 20,e=1.2.3.4 --port-scp 11999",
    "--move --patientroot --patient -k 10,20=ABCD1234 --port-scp 11999",
    "--move --patientroot --image -k 10,20=P -k 20,d=1.2 -k 20,e=1.2.3 -k 8,18=1.2.3.4 --port-scp 11999",
    "--find --patient --patientroot -k 10,9997=abc",  # a public tag newer than the dictionary: its bytes, as typed
    "--find --patient --patientroot -k 9,10=ACME -k 9,1001=x",  # a private block
    "--find --patient --patientroot -k '10, 10=X'",  # a space after the comma, as sscanf reads it
]
LOCALES = ["C", "C.UTF-8"]


def gdcmscu() -> str:
    path = shutil.which("gdcmscu", path="/usr/bin")
    if path is None:
        if os.environ.get("CI"):
            raise RuntimeError("gdcmscu is required in CI (installed by tests/run.sh: libgdcm-tools)")
        pytest.skip("gdcmscu is not installed (apt-get install libgdcm-tools)")
    return path


def elements(path) -> list[tuple]:
    ds = pydicom.dcmread(path, force=True)
    return [(int(e.tag), e.VR, e.value if not isinstance(e.value, bytes) else e.value.rstrip(b"\0 "))
            for e in ds if e.tag.group != 0x0002]


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("line", COMMAND_LINES)
def test_identifier_equals_gdcmscus(tmp_path, line, locale):
    env = {**os.environ, "LC_ALL": locale}
    theirs, ours = tmp_path / "gdcmscu.dcm", tmp_path / "dicomscu.dcm"
    args = shlex.split(line)
    subprocess.run([gdcmscu(), *args, "--store-query", str(theirs), "127.0.0.1", "1"], env=env,
                   capture_output=True, timeout=30)  # it writes the file, then fails to connect
    assert theirs.exists(), f"gdcmscu wrote no query for {line}"
    result = run_inprocess(*args, "--store-query", str(ours), "127.0.0.1", "1", "--timeout", "2", environ=env)
    assert ours.exists(), result.stderr
    assert elements(ours) == elements(theirs)


def _answers():
    from pydicom.dataset import Dataset

    flat = Dataset()
    flat.SpecificCharacterSet = "ISO_IR 192"
    flat.QueryRetrieveLevel = "STUDY"
    flat.PatientName = "Müller^Jérôme"
    flat.PatientID = "PID1"
    flat.StudyDate = "20240101"
    flat.AccessionNumber = ""
    flat.ModalitiesInStudy = ["CT", "MR"]
    flat.NumberOfStudyRelatedInstances = 5
    flat.StudyInstanceUID = "1.2.826.0.1.3680043.10.1137.1.1.0.1"
    image = Dataset()
    image.QueryRetrieveLevel = "IMAGE"
    image.SOPInstanceUID = "1.2.3.4"
    image.Rows, image.Columns = 512, 512
    image.InstanceNumber = 12
    image.PatientID = "A\x01B"
    nested = Dataset()
    nested.QueryRetrieveLevel = "STUDY"
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = "1.2.3.4.5"
    nested.ReferencedStudySequence = [item]
    nested.OtherPatientIDsSequence = []
    return [flat, image, nested]


@pytest.mark.parametrize("number", range(3))
def test_dump_lines_are_gdcmdumps(tmp_path, number):
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from dicomscu.output.gdcmdump import dump_lines

    dump = shutil.which("gdcmdump", path="/usr/bin")
    if dump is None:
        gdcmscu()  # the same package: required in CI, a skip elsewhere
    answer = _answers()[number]
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, answer)
    path = tmp_path / "answer.dcm"
    answer.save_as(path, implicit_vr=True, little_endian=True)
    printed = subprocess.run([dump, str(path)], capture_output=True, text=True, errors="replace").stdout
    theirs = [line for line in printed.splitlines() if line.startswith((" ", "("))]
    assert dump_lines(buffer.getvalue()) == theirs


def test_find_dump_output_numbers_each_answer():
    from pydicom.dataset import Dataset

    from peers import find_scp

    def on_find(event):
        for name in ("A^B", "C^D"):
            answer = Dataset()
            answer.QueryRetrieveLevel = "PATIENT"
            answer.PatientName = name
            yield 0xFF00, answer

    with find_scp("DUMPER", on_find) as port:
        result = run_dicomscu("--find", "--patient", "--patientroot", "127.0.0.1", str(port), "-k", "10,10",
                              "--format", "dump")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Find Response: 1" and "Find Response: 2" in lines
    assert any(line.startswith("(0010,0010) ?? (PN) [A^B ]") and line[66:].startswith("# 4,1 Patient's Name")
               for line in lines), lines


def test_under_gdcmscus_name_it_behaves_as_gdcmscu(tmp_path):
    """A link named gdcmscu: answers (dump) and messages on stderr, nothing on stdout, exit 0 or 1, unknown
    options warned about and ignored."""
    import sys
    from pathlib import Path

    from pydicom.dataset import Dataset

    from peers import find_scp, free_port

    script = Path(sys.executable).parent / "dicomscu"  # the console script pip installed (not a pyenv shim)
    if not script.exists():
        pytest.skip("no dicomscu console script beside this Python")
    link = tmp_path / "gdcmscu"
    link.symlink_to(script)

    def on_find(event):
        answer = Dataset()
        answer.QueryRetrieveLevel = "PATIENT"
        answer.PatientName = "A^B"
        yield 0xFF00, answer

    with find_scp("ANY-SCP", on_find) as port:
        found = subprocess.run([str(link), "--find", "--patient", "--patientroot", "-k", "10,10", "--bogus",
                                "127.0.0.1", str(port)], capture_output=True, text=True, timeout=60)
        echo = subprocess.run([str(link), "127.0.0.1", str(port)], capture_output=True, text=True, timeout=60)
        log = tmp_path / "trace.log"
        logged = subprocess.run([str(link), "--find", "--patient", "--patientroot", "-k", "10,10", "-L", str(log),
                                 "127.0.0.1", str(port)], capture_output=True, text=True, timeout=60)
    refused = subprocess.run([str(link), "127.0.0.1", str(free_port())], capture_output=True, text=True, timeout=60)
    assert logged.returncode == 0 and "Find Response: 1" in log.read_text() and "Find Response" not in logged.stderr
    assert found.returncode == 0 and found.stdout == "" and echo.stdout == "" and refused.stdout == ""
    assert "Find Response: 1" in found.stderr and "[A^B ]" in found.stderr
    assert "unrecognized option '--bogus'" in found.stderr
    assert refused.returncode == 1  # dicomscu's own name would say 3 (connection refused)


@pytest.mark.parametrize("arguments", [["--version"], ["-v"], ["-h"], ["--help"], ["--queryhelp"], [],
                                       ["--echo"], ["-L", "LOG", "--version"], ["--find", "--patient"]],
                         ids=lambda arguments: " ".join(arguments) or "nothing")
def test_under_gdcmscus_name_help_version_and_queryhelp_use_gdcmscus_streams(tmp_path, arguments):
    """What the real gdcmscu prints on stdout (help, version, query help; the help when no host is given)
    and its exit status, under the link's name too: `gdcmscu --queryhelp > keys.txt` gets the keys."""
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "dicomscu"
    if not script.exists():
        pytest.skip("no dicomscu console script beside this Python")
    link = tmp_path / "gdcmscu"
    link.symlink_to(script)
    arguments = [str(tmp_path / "log") if argument == "LOG" else argument for argument in arguments]
    ours = subprocess.run([str(link), *arguments], capture_output=True, text=True, timeout=60)
    theirs = subprocess.run([gdcmscu(), *arguments], capture_output=True, text=True, timeout=60)
    assert ours.returncode == theirs.returncode, (ours, theirs)
    assert bool(ours.stdout) == bool(theirs.stdout) and bool(ours.stderr) == bool(theirs.stderr), (ours, theirs)
    if "--queryhelp" in arguments:
        assert "PatientID" in ours.stdout


#: Locale variable mixes as cron, containers and shells leave them; Python coerces the C ones to C.UTF-8
#: (PEP 538) before our code runs, so what gdcmscu sees must be read from the process's initial environment.
LOCALE_MIXES = [{"LC_ALL": "C"}, {"LANG": "C"}, {}, {"LC_CTYPE": "POSIX"},
                {"LANG": "en_US.UTF-8", "LC_CTYPE": "C"}, {"LC_ALL": "C.UTF-8"}]


@pytest.mark.parametrize("mix", LOCALE_MIXES, ids=lambda mix: " ".join(f"{k}={v}" for k, v in mix.items()) or "none")
@pytest.mark.parametrize("value", [b"M\xfcller", b"Doe*"], ids=["latin-1-bytes", "ascii"])
def test_bytes_typed_in_a_locale_go_out_as_gdcmscu_sends_them(tmp_path, mix, value):
    """The bytes of a value are sent as given, never a '?' (a wildcard) in place of one the locale cannot
    decode, and the character set declared is gdcmscu's for that locale; bytes that are not valid in the
    locale's character set (Latin-1 bytes in a UTF-8 locale) are a usage error naming the byte, where
    gdcmscu sends them under a character set they are not in (a documented difference)."""
    import sys

    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), **mix}
    theirs, ours = tmp_path / "gdcmscu.dcm", tmp_path / "dicomscu.dcm"
    args = [b"--find", b"--patientroot", b"--patient", b"-k", b"10,10=" + value]
    subprocess.run([gdcmscu(), *args, b"--store-query", bytes(theirs), b"127.0.0.1", b"1"], env=env,
                   capture_output=True, timeout=30)
    result = subprocess.run([sys.executable.encode(), b"-m", b"dicomscu", *args, b"--store-query", bytes(ours),
                             b"127.0.0.1", b"1", b"--timeout", b"2"], env=env, capture_output=True, timeout=60)
    utf8 = "UTF-8" in (mix.get("LC_ALL") or mix.get("LC_CTYPE") or mix.get("LANG") or "")
    if utf8 and not value.isascii():
        assert result.returncode == 2 and b"0xFC" in result.stderr and b"--charset" in result.stderr
        assert not ours.exists()
        return
    assert theirs.exists() and ours.exists(), result.stderr
    assert elements(ours) == elements(theirs)
    assert value in ours.read_bytes()


#: Retrievals by their keys: the gdcmscu test's lines as C-GET, and the forms the light builder must hand on.
RETRIEVAL_LINES = sorted({re.sub(r" --port-scp \d+", "", line.replace("--move", "--get"))
                          for line in COMMAND_LINES if "--move" in line or "--get" in line} | {
    "--get --studyroot --study -k StudyInstanceUID=1.2.3",
    "--get --patientroot --patient -k PatientID=ABC",
    "--get --studyroot --series -k 20,d=1.2 -k 20,e=1.2.3",
    "--get --studyroot --image -k 20,d=1.2 -k 20,e=1.2.3 -k 8,18=1.2.3.4",
    "--get --studyroot --study -k 20,d=1.2.3\\1.2.4",
    "--get --patientroot --study -k 10,20=P1 -k 20,d=1.2.3",
    "--get --studyroot --series -k 20,e=1.2.3",  # no study: the builder adds it empty
    "--get --studyroot --study -k 20,d=1.2.3 -k 10,20=",  # a return key
    "--get --studyroot --study -k 20,d=1.2.3 -k 8,52=STUDY",
    "--get --patientroot --patient -k 10,20=AB_CD-1",
})
RETRIEVAL_LOCALES = [{"LC_ALL": "C"}, {"LC_ALL": "C.UTF-8"}, {"LANG": "en_US.ISO-8859-1"}, {}, {"LANG": "C"},
                     {"LC_ALL": "de_DE.ISO-8859-15"}, {"LC_ALL": "ru_RU.KOI8-R"}, {"LANG": "el_GR.ISO-8859-7"}]


@pytest.mark.parametrize("environ", RETRIEVAL_LOCALES, ids=lambda mix: " ".join(f"{k}={v}" for k, v in mix.items())
                         or "none")
def test_the_light_retrieval_identifier_is_byte_for_byte_the_query_builders(environ):
    """Retrievals by unique keys skip pydicom with an identifier of their own: it must be what the query
    builder (and --store-query) makes, or give way to it."""
    from dicomscu.cli.parser import parse
    from dicomscu.errors import DicomscuError
    from dicomscu.files.codec import encode
    from dicomscu.query.build import build_query
    from dicomscu.query.identifier import from_keys

    light_ones = 0
    for line in RETRIEVAL_LINES:
        request = parse(shlex.split(line) + ["127.0.0.1", "11112"], environ)
        try:
            light = from_keys(request.model, request.level, request.keys, "C-GET", environ)
        except DicomscuError:
            continue  # refused (a level's key missing): no identifier is sent at all
        if light is None:
            continue
        light_ones += 1
        full = build_query(request.model, request.level, request.keys, level_key=False, environ=environ)
        for syntax in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
            assert light.encode(syntax) == encode(full.dataset, syntax), (line, environ)
    assert light_ones >= 8


def test_what_a_retrieval_sends_is_what_store_query_writes(tmp_path):
    """On the wire (a scripted C-GET SCP, Implicit VR LE), each retrieval line's identifier sent without
    --store-query is byte for byte the data set of the file --store-query writes for it."""
    from pynetdicom import evt
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelGet,
    )

    from conftest import run_inprocess
    from peers import pynetdicom_scp

    wire: list[bytes] = []

    def on_get(event):
        wire.append(event.request.Identifier.getvalue())
        yield 0

    implicit = ["1.2.840.10008.1.2"]
    contexts = [(uid, implicit) for uid in (PatientRootQueryRetrieveInformationModelGet,
                                            StudyRootQueryRetrieveInformationModelGet,
                                            PatientRootQueryRetrieveInformationModelFind,
                                            StudyRootQueryRetrieveInformationModelFind)]
    compared = 0
    with pynetdicom_scp("ANY-SCP", contexts, evt.EVT_C_GET, on_get) as port:
        for environ in ({"LC_ALL": "C"}, {"LC_ALL": "C.UTF-8"}):
            for number, line in enumerate(RETRIEVAL_LINES):
                stored = tmp_path / f"q{number}-{len(environ['LC_ALL'])}.dcm"
                base = [*shlex.split(line), "127.0.0.1", str(port), "-o", str(tmp_path / "out"), "--timeout", "5"]
                written = run_inprocess(*base, "--store-query", str(stored), environ=environ)
                if written.returncode == 2:
                    continue  # refused on the command line, with or without the file
                wire.clear()
                sent = run_inprocess(*base, environ=environ)
                assert wire, (line, sent.stderr)
                data = stored.read_bytes()
                assert data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00"
                header = 144 + int.from_bytes(data[140:144], "little")  # preamble, DICM, group 2 and its length
                assert wire[-1] == data[header:], (line, environ, wire[-1], data[header:])
                compared += 1
    assert compared >= 20


def _raw_value(path, tag: int) -> bytes | None:
    """The raw value of top-level `tag` in an Implicit VR LE query file (None when absent)."""
    ds = pydicom.dcmread(path, force=True)
    if tag not in ds:
        return None
    data = path.read_bytes()
    header = tag.to_bytes(4, "big")
    needle = header[1::-1] + header[3:1:-1]  # group then element, each little endian
    position = data.rfind(needle)
    length = int.from_bytes(data[position + 4:position + 8], "little")
    return data[position + 8:position + 8 + length]


DIFFERENCES = {
    # name: (arguments, what gdcmscu's file shows, what ours shows)
    "space padding, not NUL": ("--find --patient --patientroot -k 10,20=ABC",
                               lambda f: _raw_value(f, 0x00100020) == b"ABC\0",
                               lambda f: _raw_value(f, 0x00100020) == b"ABC "),
    "US as a binary number": ("--find --image --patientroot -k 10,20=P -k 20,d=1 -k 20,e=1 -k 28,10=512",
                              lambda f: _raw_value(f, 0x00280010) == b"512\0",
                              lambda f: _raw_value(f, 0x00280010) == (512).to_bytes(2, "little")),
    "quotes stripped": ("--find --patient --patientroot -k '10,10=\"A*\"'",
                        lambda f: pydicom.dcmread(f).PatientName == '"A*"',
                        lambda f: pydicom.dcmread(f).PatientName == "A*"),
    "a user's 8,5= kept": ("--find --patient --patientroot -k 10,10=A -k 8,5=",
                           lambda f: pydicom.dcmread(f).SpecificCharacterSet == "ISO_IR 192",
                           lambda f: _raw_value(f, 0x00080005) == b""),
    "a contradictory level refused": ("--find --patient --patientroot -k 8,52=STUDY -k 10,10=A",
                                      lambda f: pydicom.dcmread(f).QueryRetrieveLevel == "STUDY",
                                      None),
    "a value its VR cannot hold refused": ("--find --image --patientroot -k 10,20=P -k 20,d=1 -k 20,e=1 -k 20,13=abc",
                                           lambda f: _raw_value(f, 0x00200013) == b"abc\0", None),
    "GB18030 spelled as the standard spells it": (
        "--find --patient --patientroot -k 10,10=Doe",
        lambda f: pydicom.dcmread(f).SpecificCharacterSet == "GB13080",
        lambda f: pydicom.dcmread(f).SpecificCharacterSet == "GB18030"),
    "a retrieval sends its keys with values only": (
        "--move --studyroot --series -k 20,d=1.2.3 -k 20,e=1.2.3.4 -k 8,60= --port-scp 11999",
        lambda f: _raw_value(f, 0x00080060) == b"", lambda f: _raw_value(f, 0x00080060) is None),
}


@pytest.mark.parametrize("name", DIFFERENCES)
def test_each_documented_difference_from_gdcmscu_is_as_documented(tmp_path, name):
    """The README lists where dicomscu deliberately departs from gdcmscu: each is checked against the real
    gdcmscu's --store-query file (None: dicomscu refuses the command line, exit 2, and writes nothing)."""
    line, theirs_shows, ours_shows = DIFFERENCES[name]
    env = {**os.environ, "LC_ALL": "zh_CN.GB18030" if name.startswith("GB18030") else "C.UTF-8"}
    theirs, ours = tmp_path / "gdcmscu.dcm", tmp_path / "dicomscu.dcm"
    subprocess.run([gdcmscu(), *shlex.split(line), "--store-query", str(theirs), "127.0.0.1", "1"], env=env,
                   capture_output=True, timeout=30)
    result = run_inprocess(*shlex.split(line), "--store-query", str(ours), "127.0.0.1", "1", "--timeout", "2",
                           environ=env)
    assert theirs.exists() and theirs_shows(theirs), name
    if ours_shows is None:
        assert result.returncode == 2 and not ours.exists(), result.stderr
    else:
        assert ours.exists() and ours_shows(ours), (name, result.stderr)


#: Every model and level gdcmscu takes, times key sets in gdcmscu's own forms: 154 command lines.
ORACLE_LEVELS = {"--patientroot": ["--patient", "--study", "--series", "--image"],
                 "--studyroot": ["--study", "--series", "--image"]}
ORACLE_KEYS = [[], ["10,10"], ["10,10=A*"], ["10,20=P1"], ["10,10=Doe^J*"], ["8,20=20200101-20201231"],
               ["8,20=-20201231", "8,30"], ["8,50=ACC*"], ["8,61=CT"], ["20,d=1.2.3"], ["20,d=1.2.3\\1.2.4"],
               ["8,60=MR", "20,11"], ["0x10,0x10=X"], ["10,10,Doe"], ["10, 10=Y"], ["10,10=A", "10,10=B"],
               ["8,1030=*chest*"], ["8,18=1.2.3.4.5"], ["10,30=19700101", "10,40=M"], ["20,13=5"], ["28,30"],
               ["10,1010=045Y"]]
ORACLE_LINES = [" ".join(["--find", model, level, *(f"-k {shlex.quote(key)}" for key in keys)])
                for model, levels in ORACLE_LEVELS.items() for level in levels for keys in ORACLE_KEYS]
#: Locales as users have them (tests/run.sh generates the ones a fresh machine lacks).
ORACLE_LOCALES = ["C", "C.UTF-8", "en_US.UTF-8", "de_DE.ISO-8859-1", "de_DE@euro", "tr_TR.ISO-8859-9",
                  "el_GR.ISO-8859-7", "pl_PL.ISO-8859-2", "ru_RU.ISO-8859-5", "en_US.CP1252", "ru_RU.KOI8-R"]


def _installed_locales() -> set[str]:
    listed = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.split()
    return {name.lower().replace("-", "") for name in listed}


@pytest.mark.parametrize("locale_name", ORACLE_LOCALES)
def test_154_command_lines_give_gdcmscus_identifier_in_each_locale(tmp_path, locale_name):
    """Each line's --store-query file, ours and the real gdcmscu's, element by element (the declared
    character set included), in a locale the C library has (tests/run.sh generates them)."""
    from concurrent.futures import ThreadPoolExecutor

    wanted = locale_name.lower().replace("-", "")
    assert locale_name in ("C", "C.UTF-8") or wanted in _installed_locales(), \
        f"locale {locale_name} is not generated here (tests/run.sh generates it)"
    env = {"PATH": os.environ["PATH"], "LC_ALL": locale_name}

    def theirs(number: int) -> Path:
        path = tmp_path / f"gdcmscu-{number}.dcm"
        subprocess.run([gdcmscu(), *shlex.split(ORACLE_LINES[number]), "--store-query", str(path), "127.0.0.1",
                        "1"], env=env, capture_output=True, timeout=30)
        return path

    with ThreadPoolExecutor(4) as pool:
        their_files = list(pool.map(theirs, range(len(ORACLE_LINES))))
    wrong = []
    for line, their_file in zip(ORACLE_LINES, their_files):
        ours = tmp_path / "ours.dcm"
        ours.unlink(missing_ok=True)
        run_inprocess(*shlex.split(line), "--store-query", str(ours), "127.0.0.1", "1", "--timeout", "1", environ=env)
        if not their_file.exists() or not ours.exists():
            wrong.append((line, "written by gdcmscu" if their_file.exists() else "written by dicomscu only"))
        elif elements(ours) != elements(their_file):
            wrong.append((line, elements(ours), elements(their_file)))
    assert len(ORACLE_LINES) >= 150 and not wrong, wrong[:5]


def test_a_find_sends_what_store_query_writes_for_every_oracle_line(tmp_path):
    """On the wire (a scripted C-FIND SCP, Implicit VR LE): the identifier each line sends is byte for byte
    the data set of its --store-query file."""
    from pynetdicom import evt
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
    )

    from peers import pynetdicom_scp

    wire: list[bytes] = []

    def on_find(event):
        wire.append(event.request.Identifier.getvalue())
        yield 0x0000, None

    contexts = [(PatientRootQueryRetrieveInformationModelFind, ["1.2.840.10008.1.2"]),
                (StudyRootQueryRetrieveInformationModelFind, ["1.2.840.10008.1.2"])]
    with pynetdicom_scp("ANY-SCP", contexts, evt.EVT_C_FIND, on_find) as port:
        for environ in ({"PATH": os.environ["PATH"], "LC_ALL": "C"}, {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"}):
            for line in ORACLE_LINES:
                stored = tmp_path / "q.dcm"
                wire.clear()
                result = run_inprocess(*shlex.split(line), "--store-query", str(stored), "127.0.0.1", str(port),
                                       "--timeout", "5", "--format", "dump", environ=environ)
                assert result.returncode == 0 and len(wire) == 1, (line, result.stderr)
                data = stored.read_bytes()
                assert wire[0] == data[144 + int.from_bytes(data[140:144], "little"):], (line, environ)


def _every_vr() -> "pydicom.Dataset":
    """A data set holding one element of each VR gdcmdump reads in Implicit VR, a private block with its
    creator and an element without one, nested sequences, wrong multiplicities, ambiguous VRs, control
    characters, a trailing NUL and a value longer than the line."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = Dataset()
    for tag, vr, value in [
        (0x00080005, "CS", "ISO_IR 100"), (0x00080016, "UI", "1.2.840.10008.5.1.4.1.1.2"),
        (0x00080020, "DA", "20200101"), (0x00080030, "TM", "120000.5"), (0x0008002A, "DT", "20200101120000"),
        (0x00080050, "SH", "A\tB\x01"), (0x00080054, "AE", "PACS"), (0x00080060, "CS", ""),
        (0x00080119, "UC", "a long code"), (0x00080120, "UR", "http://example.org"), (0x00081030, "LO", "AB\0\0"),
        (0x0008103E, "LO", "x" * 70), (0x00100010, "PN", "Doe^John=Doe^J"), (0x00101010, "AS", "045Y"),
        (0x00101030, "DS", "70.5"), (0x00104000, "LT", "line1\r\nline2"), (0x00180050, "DS", ["1.5", "2"]),
        (0x00186020, "SL", [-1, 2]), (0x00189087, "FD", 1000.5), (0x00189219, "SS", -3),
        (0x00200013, "IS", "12"), (0x00200032, "DS", ["1", "2"]), (0x00209165, "AT", [0x00181063, 0x00200013]),
        (0x00280010, "US", 512), (0x00280030, "DS", ["1"]), (0x00280106, "US", 5), (0x00281201, "OW", b"\x01\x02"),
        (0x00283006, "US", [1, 2]), (0x00400009, "SH", "SPS1"), (0x00420011, "OB", bytes(range(12))),
        (0x0040A160, "UT", "some text"), (0x00460044, "FD", [1.5, 2.25]), (0x00700052, "SL", [1, 2]),
        (0x00701052, "FL", 1.5), (0x00720066, "LO", ["A", "B"]), (0x7FE00010, "OW", b"\x00\x01" * 4),
        (0x00090010, "LO", "ACME 1.1"), (0x00091001, "LO", "private value"), (0x00091002, "US", 4),
        (0x00111001, "LO", "orphan"),
    ]:
        ds.add_new(tag, vr, value)
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "1.2.3"
    inner.add_new(0x00091001, "LO", "no creator here")
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "123", "DCM", "Thing"
    item.ReferencedSOPSequence = [inner]
    ds.add_new(0x00081032, "SQ", Sequence([item, Dataset()]))
    ds.add_new(0x00081199, "SQ", Sequence())
    return ds


def test_the_dump_of_every_vr_is_gdcmdumps_whole_text(tmp_path):
    """Line for line and byte for byte, raw CR/LF/TAB included, against the real gdcmdump."""
    import warnings

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    from dicomscu.output.gdcmdump import dump_lines

    dump = shutil.which("gdcmdump", path="/usr/bin")
    if dump is None:
        gdcmscu()  # the same package: required in CI, a skip elsewhere
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (values made wrong on purpose)
        ds = _every_vr()
        path = tmp_path / "every-vr.dcm"
        ds.save_as(path, implicit_vr=True, little_endian=True)
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, True
        write_dataset(buffer, ds)
    printed = subprocess.run([dump, str(path)], capture_output=True).stdout.decode("latin-1")
    theirs = printed.split("# Dicom-Data-Set\n", 1)[1].split("\n", 1)[1].rstrip("\n")  # after its syntax line
    assert "\n".join(dump_lines(buffer.getvalue())) == theirs


def test_options_are_read_as_gdcmscus_getopt_reads_them(tmp_path):
    """An option's value is the next argument whatever it looks like (`--call -X`), and under gdcmscu's name
    an ambiguous abbreviation is warned about, with the same possibilities, and the run goes on."""
    import sys

    script = Path(sys.executable).parent / "dicomscu"
    if not script.exists():
        pytest.skip("no dicomscu console script beside this Python")
    link = tmp_path / "gdcmscu"
    link.symlink_to(script)
    theirs = subprocess.run([gdcmscu(), "--st", "--queryhelp"], capture_output=True, text=True, timeout=30)
    ours = subprocess.run([str(link), "--st", "--queryhelp"], capture_output=True, text=True, timeout=60)
    assert ours.returncode == theirs.returncode == 0 and ours.stdout and theirs.stdout
    (their_warning,) = [line for line in theirs.stderr.splitlines() if "ambiguous" in line]
    (our_warning,) = [line for line in ours.stderr.splitlines() if "ambiguous" in line]
    # (getopt names the program as it was called: /usr/bin/gdcmscu here)
    assert our_warning.split(";")[0] == their_warning.split(";")[0].rsplit("/", 1)[-1] == \
        "gdcmscu: option '--st' is ambiguous"
    assert set(re.findall(r"'(--[\w-]+)'", our_warning)) == set(re.findall(r"'(--[\w-]+)'", their_warning))
    assert run_inprocess("--st", "127.0.0.1", "1").returncode == 2  # dicomscu's own name: a usage error
    env = {**os.environ, "LC_ALL": "C"}
    line = ["--find", "--patient", "--patientroot", "--call", "-X", "--aetitle", "-ME", "-k", "10,10"]
    subprocess.run([gdcmscu(), *line, "--store-query", str(tmp_path / "g.dcm"), "127.0.0.1", "1"], env=env,
                   capture_output=True, timeout=30)
    result = run_inprocess(*line, "--store-query", str(tmp_path / "o.dcm"), "127.0.0.1", "1", "--timeout", "1",
                           environ=env)
    assert result.returncode == 3 and "connection refused" in result.stderr, result.stderr  # parsed, then sent
    assert elements(tmp_path / "o.dcm") == elements(tmp_path / "g.dcm")
