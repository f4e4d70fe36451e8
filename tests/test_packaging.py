"""The package installs whole: `pip install .` (not only editable installs) must ship every module."""

from pathlib import Path

from setuptools import find_packages

SRC = Path(__file__).resolve().parents[1] / "src"


def test_every_source_folder_is_a_regular_package():
    folders = {p.parent for p in (SRC / "dicomscu").rglob("*.py")}
    shipped = {SRC.joinpath(*name.split(".")) for name in find_packages(str(SRC))}
    assert folders <= shipped, sorted(str(f) for f in folders - shipped)
