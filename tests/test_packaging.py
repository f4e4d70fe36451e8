"""The package installs whole: `pip install .` (not only editable installs) must ship every module."""

from pathlib import Path

import pytest

from setuptools import find_packages

SRC = Path(__file__).resolve().parents[1] / "src"


def test_every_source_folder_is_a_regular_package():
    folders = {p.parent for p in (SRC / "dicomscu").rglob("*.py")}
    shipped = {SRC.joinpath(*name.split(".")) for name in find_packages(str(SRC))}
    assert folders <= shipped, sorted(str(f) for f in folders - shipped)


def test_nothing_reaches_outside_the_repository():
    """A fresh clone has nothing beside it: no tracked file may lean on a sibling folder."""
    import re
    import subprocess

    root = SRC.parent
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=False)
    if listed.returncode != 0:
        import pytest

        pytest.skip("not a git checkout")
    sibling = b"shared"  # the folder beside the checkout that a fresh clone does not have
    outside = re.compile(rb"\.\./" + sibling + rb"|DICOMSCU_" + sibling.upper() + rb"|make_data\.py")
    offenders = [name for name in listed.stdout.decode().split("\0")
                 if name and (root / name).is_file()
                 and outside.search((root / name).read_bytes())]
    assert not offenders


def test_no_module_imports_pynetdicom():
    """pynetdicom is a test oracle and a peer, never a runtime dependency (the protocol core is ours)."""
    import ast

    offenders = []
    for path in (SRC / "dicomscu").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] == "pynetdicom"]
    assert not offenders


@pytest.mark.parametrize("arguments", [[], ["--store", "--no-progress", "{files}"]], ids=["echo", "store"])
def test_echo_and_store_load_neither_pydicom_nor_rich(storescp, dataset_dir, arguments):
    """Start-up dominates short commands: the C-ECHO path is the protocol core and the CLI only, and a
    C-STORE of files the peer takes as they are probes them itself (pydicom only to convert one)."""
    import subprocess
    import sys

    argv = ["127.0.0.1", str(storescp.port)] + [a.format(files=dataset_dir / "small") for a in arguments]
    script = ("import sys\nfrom dicomscu.app import main\n"
              f"code = main({argv!r})\n"
              "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pydicom', 'rich', 'pynetdicom', 'numpy'))\n"
              "print(code, heavy)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout + result.stderr


@pytest.mark.parametrize("operation", [["--get"], ["--move"], ["--get", "-j", "2"], ["--move", "-j", "2"]],
                         ids=["get", "move", "get-j2", "move-j2"])
def test_a_retrieval_by_uids_loads_no_pydicom(dataset_dir, tmp_path, operation):
    """C-GET and C-MOVE (and the C-FIND survey before a C-GET, the series query before -j) of a study named
    by its UID: the identifiers are built, encoded and checked without pydicom, and the instances written by
    our own probe."""
    import subprocess
    import sys

    import pydicom

    from dicomscu.server.pacs import Pacs, ServerConfig
    from peers import free_port

    port_scp = free_port()
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage"),
                               destinations={"GDCMSCU": ("127.0.0.1", port_scp)}))
    server.start()
    try:
        peer = ["127.0.0.1", str(server.port), "--call", "DICOMSCU"]
        assert subprocess.run([sys.executable, "-m", "dicomscu", "--store", *peer, str(dataset_dir), "-r"],
                              capture_output=True).returncode == 0
        study = pydicom.dcmread(next((dataset_dir / "small").iterdir())).StudyInstanceUID
        argv = [*operation, "--study", "--studyroot", *peer, "-k", f"StudyInstanceUID={study}", "-o",
                str(tmp_path / "out"), "--port-scp", str(port_scp)]
        script = ("import sys\nfrom dicomscu.app import main\n"
                  f"code = main({argv!r})\n"
                  "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pydicom', 'rich', 'numpy'))\n"
                  "print(code, heavy)\n")
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout + result.stderr
    written = list((tmp_path / "out").rglob("*.dcm"))
    assert len(written) == sum(1 for path in (dataset_dir / "small").iterdir()
                               if pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID == study)
