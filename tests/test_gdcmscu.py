"""The identifier on the wire is gdcmscu's, byte for byte: the real gdcmscu is the oracle.

Debian's gdcmscu (libgdcm-tools) cannot connect here, but it writes its
``--store-query`` file before it tries to: for each command line below, in a
UTF-8 and in the C locale, the data set dicomscu writes (and sends) must equal
gdcmscu's, element by element (tag, VR, value).  Group 0002 may differ: ours is a
proper Part 10 file meta.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess

import pydicom
import pytest

from conftest import run_dicomscu

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
    result = run_dicomscu(*args, "--store-query", str(ours), "127.0.0.1", "1", "--timeout", "2", env=env)
    assert ours.exists(), result.stderr
    assert elements(ours) == elements(theirs)
