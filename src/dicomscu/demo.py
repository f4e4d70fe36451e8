"""``dicomscu demo``: the whole tool in one minute, with no other software.

Starts the embedded PACS on free loopback ports in a temporary directory, writes a
small sample study, then runs echo -> store -> find -> get -> move with dicomscu
itself, printing each gdcmscu-style command line and what it answered.  Cleans up
and exits 0 only if every step did what it should.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from dicomscu.server.pacs import Pacs, ServerConfig

SERIES = (("CT", 3, ExplicitVRLittleEndian), ("MR", 2, ImplicitVRLittleEndian))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_sample_study(folder: Path) -> list[Path]:
    """One patient, one study, a CT and an MR series of small images (64x64, 16 bits)."""
    folder.mkdir(parents=True, exist_ok=True)
    study = generate_uid()
    paths = []
    for series_number, (modality, count, syntax) in enumerate(SERIES, start=1):
        series = generate_uid()
        for number in range(1, count + 1):
            ds = Dataset()
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
            ds.SOPInstanceUID = generate_uid()
            ds.PatientName, ds.PatientID = "Démo^Patient", "DEMO001"
            ds.PatientBirthDate, ds.PatientSex = "19800101", "O"
            ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study, "20260101", "120000"
            ds.StudyID, ds.AccessionNumber, ds.StudyDescription = "1", "DEMO-1", "dicomscu demo"
            ds.SeriesInstanceUID, ds.SeriesNumber, ds.Modality = series, series_number, modality
            ds.InstanceNumber = number
            ds.Rows = ds.Columns = 64
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.PixelData = bytes((i * number) % 256 for i in range(64 * 64 * 2))
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = syntax
            path = folder / f"{modality}{number}.dcm"
            ds.save_as(path, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian)
            paths.append(path)
    return paths


def run_demo(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    with tempfile.TemporaryDirectory(prefix="dicomscu-demo-") as work:
        root = Path(work)
        port, port_scp = free_port(), free_port()
        pacs = Pacs(ServerConfig(port=port, host="127.0.0.1", storage=str(root / "pacs"),
                                 destinations={"DEMO": ("127.0.0.1", port_scp)}))
        pacs.start()
        try:
            study = write_sample_study(root / "study")
            print(f"Embedded PACS: AE DICOMSCU on 127.0.0.1:{port}, storage {pacs.storage}")
            print(f"Sample study: {len(study)} files in {root / 'study'}\n")
            host = ["127.0.0.1", str(port), "--call", "DICOMSCU"]
            steps = [
                ("C-ECHO: is the server up?", [*host], "success"),
                ("C-STORE: send the study", ["--store", *host, "-r", str(root / "study")], "5 of 5 file(s) stored"),
                ("C-FIND: which studies are there?", ["--find", "--study", "--studyroot", *host, "-k", "PatientName",
                                                       "-k", "StudyDate", "-k", "ModalitiesInStudy",
                                                       "-k", "NumberOfStudyRelatedInstances", "--format", "table"],
                 "1 match(es)"),
                ("C-GET: retrieve the study over the same association",
                 ["--get", "--study", "--studyroot", *host, "-k", f"StudyInstanceUID={_study_uid(study)}",
                  "-o", str(root / "get")], "5 file(s) written"),
                ("C-MOVE: the same, the gdcmscu way (the server connects back to us as AE DEMO)",
                 ["--move", "--study", "--studyroot", *host, "-k", f"20,d={_study_uid(study)}", "--aetitle", "DEMO",
                  "--port-scp", str(port_scp), "-o", str(root / "move")], "5 file(s) written"),
            ]
            failures = sum(not _step(title, args, expected) for title, args, expected in steps)
        finally:
            pacs.stop()
    if failures:
        print(f"demo: {failures} step(s) failed")
        return 1
    print("demo: every step succeeded (the temporary files are removed)")
    return 0


def _study_uid(paths: list[Path]) -> str:
    from pydicom import dcmread

    return str(dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)


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
