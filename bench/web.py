#!/usr/bin/env python3
"""DICOMweb benchmark: dicomscu against dicomweb-client (the reference Python client) on the same Orthanc.

usage: python bench/web.py [--repeat N]

Orthanc with Debian's DICOMweb plugin on loopback (temp dir).  Two jobs, each tool a
whole process (start-up included), peak RSS from GNU time:

* STOW-RS of the 2,000 small files of the benchmark set (dicomweb-client: 200 data
  sets per request, read with pydicom, as its ``store_instances`` takes them);
* WADO-RS of one 200-image study (written by ``dicomscu.sample`` into
  bench/data/web-study/), every instance written to a file; then dicomscu alone on a
  1,000-image study (bench/data/web-study-1000/), to show its peak RSS flat in study size.

Reports the times, ``dicomweb-client / dicomscu`` ratios and peak RSS.  Asserts nothing.
Needs ``pip install dicomweb-client``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import measure  # noqa: E402
from peers import Orthanc  # noqa: E402
from store import ensure_data  # noqa: E402

CLIENT_STOW = textwrap.dedent("""
    import sys
    from pathlib import Path
    import pydicom
    from dicomweb_client.api import DICOMwebClient
    client = DICOMwebClient(sys.argv[1])
    files = sorted(Path(sys.argv[2]).iterdir())
    for start in range(0, len(files), 200):
        client.store_instances([pydicom.dcmread(f) for f in files[start:start + 200]])
""")
CLIENT_WADO = textwrap.dedent("""
    import sys
    from pathlib import Path
    from dicomweb_client.api import DICOMwebClient
    client = DICOMwebClient(sys.argv[1])
    out = Path(sys.argv[3])
    for ds in client.iter_study(sys.argv[2]):
        ds.save_as(out / f"{ds.SOPInstanceUID}.dcm")
""")


def main() -> int:
    args = measure.common_arguments(__doc__, HERE / "data")
    small = ensure_data(args.data) / "small"
    study_dir = args.data / "web-study"
    if not study_dir.exists():
        from dicomscu.sample import SampleSpec, write_sample

        write_sample(study_dir, SampleSpec(patients=1, studies=1, series=1, images=200, modalities=("CT",),
                                           matrix=256))
    study_files = sorted(study_dir.rglob("*.dcm"))
    import pydicom

    study_uid = pydicom.dcmread(study_files[0], stop_before_pixels=True).StudyInstanceUID
    big_dir = args.data / "web-study-1000"
    if not big_dir.exists():
        from dicomscu.sample import SampleSpec, write_sample

        write_sample(big_dir, SampleSpec(patients=1, studies=1, series=1, images=1000, modalities=("CT",),
                                         matrix=256, first_patient=500))
    big_uid = pydicom.dcmread(next(big_dir.rglob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
    with tempfile.TemporaryDirectory() as work:
        orthanc = Orthanc(Path(work) / "orthanc", dicomweb=True)
        url = orthanc.dicomweb_url
        try:
            tools = {
                "dicomscu": [sys.executable, "-m", "dicomscu", "--store", "--no-progress", url, str(small)],
                "dicomscu -j 2": [sys.executable, "-m", "dicomscu", "--store", "--no-progress", url, str(small),
                                  "-j", "2"],
                "dicomweb-client": [sys.executable, "-c", CLIENT_STOW, url, str(small)],
                # the same files into the same Orthanc over DIMSE: how much of any run is Orthanc's ingestion
                "C-STORE -j 2": [sys.executable, "-m", "dicomscu", "--store", "--no-progress", "127.0.0.1",
                                    str(orthanc.dicom_port), str(small), "--call", orthanc.aetitle, "-j", "2"],
            }
            print(f"STOW-RS of {len(list(small.iterdir()))} small files to Orthanc (DICOMweb plugin):")
            stow = {}
            for name, command in tools.items():
                runs = []
                for _ in range(args.repeat):
                    orthanc.clear()
                    runs.append(measure.run(command))
                stow[name] = (min(r.seconds for r in runs), max(r.rss_mb for r in runs))
                print(f"  {name:<16} {stow[name][0]:7.2f} s  {stow[name][1]:5d} MB peak RSS")
            print(f"  dicomweb-client / dicomscu: {stow['dicomweb-client'][0] / stow['dicomscu'][0]:.1f}x, "
                  f"with -j 2 {stow['dicomweb-client'][0] / stow['dicomscu -j 2'][0]:.1f}x (target >= 3)")

            orthanc.clear()
            measure.run([sys.executable, "-m", "dicomscu", "--store", "--no-progress", url, str(study_dir), "-r"])
            size = sum(p.stat().st_size for p in study_files) / 1e6
            print(f"WADO-RS of one {len(study_files)}-image study ({size:.0f} MB):")
            wado = {}
            for name in ("dicomscu", "dicomweb-client"):
                runs = []
                for _ in range(args.repeat):
                    out = Path(work) / f"out-{name}"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    command = ([sys.executable, "-m", "dicomscu", "--get", "--study", "--studyroot", "--no-progress",
                                url, "-k", f"StudyInstanceUID={study_uid}", "-o", str(out),
                                "--accept-all-syntaxes"] if name == "dicomscu" else
                               [sys.executable, "-c", CLIENT_WADO, url, study_uid, str(out)])
                    runs.append(measure.run(command))
                    got = len(list(out.iterdir()))
                wado[name] = (min(r.seconds for r in runs), max(r.rss_mb for r in runs))
                print(f"  {name:<16} {wado[name][0]:7.2f} s  {wado[name][1]:5d} MB peak RSS  {got} files")
            print(f"  dicomweb-client / dicomscu: {wado['dicomweb-client'][0] / wado['dicomscu'][0]:.1f}x "
                  "(target >= 3)")

            measure.run([sys.executable, "-m", "dicomscu", "--store", "--no-progress", url, str(big_dir), "-r"])
            out = Path(work) / "out-1000"
            out.mkdir()
            run = measure.run([sys.executable, "-m", "dicomscu", "--get", "--study", "--studyroot", "--no-progress",
                               url, "-k", f"StudyInstanceUID={big_uid}", "-o", str(out), "--accept-all-syntaxes"])
            print(f"WADO-RS of a 1,000-image study: dicomscu {run.seconds:.2f} s, {run.rss_mb} MB peak RSS "
                  f"({wado['dicomscu'][1]} MB for 200 images), {len(list(out.iterdir()))} files")
        finally:
            orthanc.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
