"""serve's study browser in a real browser (Debian's chromium, headless): the study list shows the patients,
a study's series come with thumbnails, and an instance is shown rendered (a screenshot that is not blank)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from test_access import Server, _stow_body

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            raise RuntimeError("chromium is required (tests/run.sh installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def test_the_study_browser_lists_studies_and_shows_an_instance(tmp_path):
    import numpy
    from PIL import Image

    browser = _chromium()
    files = [Path(get_testdata_file(name)) for name in ("CT_small.dcm", "MR_small.dcm")]
    ct = pydicom.dcmread(files[0])
    with Server(tmp_path) as server:
        body, headers = _stow_body(*files)
        assert server.request("POST", "/studies", headers, body)[0] == 200
        page = f"http://127.0.0.1:{server.pacs.http_port}/"
        profile = ["--user-data-dir=" + str(tmp_path / "profile")]
        dom = subprocess.run([browser, *FLAGS, *profile, "--virtual-time-budget=8000", "--dump-dom", page],
                             capture_output=True, text=True, timeout=120).stdout
        shot = tmp_path / "shot.png"
        subprocess.run([browser, *FLAGS, *profile, "--virtual-time-budget=10000", "--window-size=900,900",
                        f"--screenshot={shot}", page + f"#study={ct.StudyInstanceUID}&series={ct.SeriesInstanceUID}"],
                       capture_output=True, text=True, timeout=120)
        import urllib.request

        with urllib.request.urlopen(page) as response:  # the page itself: its own scripts only
            assert response.status == 200 and "default-src 'self'" in response.headers["Content-Security-Policy"]
    for ds in map(pydicom.dcmread, files):
        assert str(ds.PatientID) in dom and str(ds.PatientName) in dom
    assert dom.count("<tr") == 3  # the header and one row per study
    picture = numpy.asarray(Image.open(shot).convert("L"))
    assert len(numpy.unique(picture[250:650, :])) > 60  # the thumbnail and the rendered CT: not a blank page
