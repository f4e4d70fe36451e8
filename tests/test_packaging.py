"""The package installs whole: `pip install .` (not only editable installs) must ship every module."""

from pathlib import Path

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
