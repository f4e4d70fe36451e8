"""``dicomscu demo``: the whole tool in one minute, with no other software.

Starts the embedded PACS on free loopback ports in a temporary directory, writes a
small sample study, then runs echo -> store -> find -> get -> move with dicomscu
itself, printing each gdcmscu-style command line and what it answered.  Cleans up
and exits 0 only if every step did what it should.

With ``--keep`` the PACS goes on serving after the steps (until Ctrl-C), so that its
study browser (printed address) can be opened in a web browser on this machine.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from dicomscu.sample import STUDY, SampleSpec, write_sample
from dicomscu.server.embedded import serve
from dicomscu.transport.ports import free_port

#: One patient, one study: a CT series of 3 and an MR series of 2 small images.
SAMPLE = SampleSpec(patients=1, studies=1, series=2, count=5, modalities=("CT", "MR"), matrix=64)


def run_demo(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    keep = "--keep" in argv
    with tempfile.TemporaryDirectory(prefix="dicomscu-demo-") as work:
        root = Path(work)
        port_scp = free_port()  # (our own C-MOVE SCP's; the PACS's ports are chosen by the OS as it binds)
        pacs = serve(root / "pacs", destinations={"DEMO": ("127.0.0.1", port_scp)}, http_port=0)
        port, http_port = pacs.port, pacs.http_port
        try:
            sample = write_sample(root / "study", SAMPLE)
            study_uid = SAMPLE.uid(STUDY, SAMPLE.first_patient, 1)
            url = f"http://127.0.0.1:{http_port}/dicom-web"
            print(f"Embedded PACS: AE DICOMSCU on 127.0.0.1:{port}, DICOMweb at {url}, storage {pacs.storage}")
            print(f"Study browser: http://127.0.0.1:{http_port}/")
            print(f"Sample study (dicomscu sample): {len(sample.files)} files in {root / 'study'}\n")
            host = ["127.0.0.1", str(port), "--call", "DICOMSCU"]
            steps = [
                ("C-ECHO: is the server up?", [*host], "success"),
                ("C-STORE: send the study (up to 8 outstanding at once: the server grants a window)",
                 ["--store", *host, "--window", "8", "-r", str(root / "study")], "5 of 5 file(s) stored"),
                ("C-FIND: which studies are there?", ["--find", "--study", "--studyroot", *host, "-k", "PatientName",
                                                       "-k", "StudyInstanceUID",
                                                       "-k", "StudyDate", "-k", "ModalitiesInStudy",
                                                       "-k", "NumberOfStudyRelatedInstances", "--format", "table"],
                 "1 match(es)"),
                ("C-GET: retrieve the study over the same association",
                 ["--get", "--study", "--studyroot", *host, "-k", f"StudyInstanceUID={study_uid}",
                  "-o", str(root / "get")], "5 file(s) written"),
                ("C-MOVE: the same, the gdcmscu way (the server connects back to us as AE DEMO)",
                 ["--move", "--study", "--studyroot", *host, "-k", f"20,d={study_uid}", "--aetitle", "DEMO",
                  "--port-scp", str(port_scp), "-o", str(root / "move")], "5 file(s) written"),
                ("DICOMweb: the same PACS, the same options, a URL for a peer (QIDO-RS)",
                 ["--find", "--series", "--studyroot", url, "-k", f"StudyInstanceUID={study_uid}", "-k", "Modality",
                  "-k", "SeriesDescription", "--format", "table"], "match(es)"),
                ("DICOMweb: retrieve the study (WADO-RS)",
                 ["--get", "--study", "--studyroot", url, "-k", f"StudyInstanceUID={study_uid}",
                  "-o", str(root / "wado")], "5 file(s) written"),
            ]
            failures = sum(not _step(title, args, expected) for title, args, expected in steps)
            if keep:
                print(f"Serving: open http://127.0.0.1:{http_port}/ in a browser; Ctrl-C to stop.")
                try:
                    threading.Event().wait()
                except KeyboardInterrupt:
                    print()
        finally:
            pacs.stop()
    if failures:
        print(f"demo: {failures} step(s) failed")
        return 1
    print("demo: every step succeeded (the temporary files are removed)")
    return 0


def _step(title: str, args: list[str], expected: str) -> bool:
    print(f"# {title}")
    print("$ dicomscu " + " ".join(shlex.quote(a) for a in args))
    env = {**os.environ, "COLUMNS": "110"}
    result = subprocess.run([sys.executable, "-m", "dicomscu", "--no-progress", *args], capture_output=True,
                            text=True, timeout=120, env=env)
    output = (result.stdout + result.stderr).rstrip()
    print(output + "\n")
    ok = result.returncode == 0 and expected in output
    if not ok:
        print(f"!! expected exit 0 and '{expected}' (got exit {result.returncode})\n")
    return ok
