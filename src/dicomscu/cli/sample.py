"""``dicomscu sample OUTDIR [options]``: the sample-data command line, parsed into a SampleSpec."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from dicomscu.cli.parser import _int, _Parser, _root_uid
from dicomscu.errors import UsageError

if TYPE_CHECKING:
    from dicomscu.sample import SampleSpec

HELP = """\
Usage: dicomscu sample OUTDIR [OPTION]...
Write realistic sample studies to load into and exercise a DICOM server: patients,
studies and series of CT, MR, CR or secondary-capture images with the attributes a
PACS indexes, non-ASCII names (UTF-8), and UIDs under the dicomscu root. The same
options always write the same files, byte for byte; another --seed gives new UIDs.

  --patients N          Patients (default 2).
  --studies N           Studies per patient (default 1).
  --series N            Series per study (default 2).
  --images N            Images per series (default 5).
  --count N             Images in all instead of --images, dealt round the series in turn.
  --modality LIST       Modalities of the series of a study, in turn: CT, MR, CR, OT
                        (default CT,MR).
  --matrix N            Rows and columns (default by modality: CT 512, MR 256, CR 512, OT 64).
  --implicit            Implicit VR Little Endian (default: Explicit VR Little Endian).
  --compress LIST       Also write each image in OUTDIR/NAME/ (same UIDs) for each NAME of
                        deflate, rle, jpeg2000 (rle and jpeg2000 need
                        pip install 'dicomscu[compressed]').
  --layout tree|flat    tree: PID0000/ST01/SE01_CT/IM00001.dcm (default); flat: IM_00000.dcm.
  --seed N              Seed of the UIDs, dates and pixels (default 1).
  --first-patient N     Number of the first patient (default 0: PID0000).
  --root-uid UID        UID root (also GDCM_ROOT_UID; default 1.2.826.0.1.3680043.10.1137).
  -h, --help            This help.

Then, for example: dicomscu --store HOST PORT -r OUTDIR
"""


@dataclass
class SampleRequest:
    outdir: str = ""
    spec: SampleSpec | None = None

    @property
    def target_spec(self) -> "SampleSpec":
        if self.spec is None:  # pragma: no cover - the parser sets it for "run"
            raise UsageError("sample: nothing to write")
        return self.spec
    compress: tuple[str, ...] = ()
    help: bool = False


def parse_sample(argv: Sequence[str], environ=os.environ) -> SampleRequest:
    from dicomscu.sample import EXPLICIT_LE, IMPLICIT_LE, SampleSpec, check_compressions  # noqa: F811

    p = _Parser(prog="dicomscu sample", add_help=False, allow_abbrev=False)
    p.add_argument("outdir", nargs="?")
    for name in ("patients", "studies", "series", "images", "count", "matrix", "seed", "first-patient"):
        p.add_argument(f"--{name}")
    p.add_argument("--modality", default="CT,MR")
    p.add_argument("--implicit", action="store_true")
    p.add_argument("--compress", default="")
    p.add_argument("--layout", default="tree", choices=("tree", "flat"))
    p.add_argument("--root-uid")
    p.add_argument("-h", "--help", action="store_true")
    ns = p.parse_args(list(argv))
    if ns.help:
        return SampleRequest(help=True)
    if not ns.outdir:
        raise UsageError("sample: give the directory to write to (dicomscu sample OUTDIR)")
    defaults = SampleSpec()

    def number(name: str, default: int) -> int:
        value = getattr(ns, name.replace("-", "_"))
        return default if value is None else _int(value, f"--{name}")

    def optional(name: str) -> int | None:
        value = getattr(ns, name.replace("-", "_"))
        return None if value is None else _int(value, f"--{name}")

    spec = SampleSpec(
        patients=number("patients", defaults.patients),
        studies=number("studies", defaults.studies),
        series=number("series", defaults.series),
        images=number("images", defaults.images),
        count=optional("count"),
        modalities=tuple(m.strip().upper() for m in ns.modality.split(",") if m.strip()),
        matrix=optional("matrix"),
        syntax=IMPLICIT_LE if ns.implicit else EXPLICIT_LE,
        layout=ns.layout,
        seed=number("seed", defaults.seed),
        first_patient=number("first-patient", defaults.first_patient),
        root=_root_uid(ns.root_uid, environ) or defaults.root,
    )
    if spec.seed < 0 or spec.first_patient < 0:
        raise UsageError("sample: --seed and --first-patient must not be negative")
    spec.check()
    compress = tuple(name.strip().lower() for name in ns.compress.split(",") if name.strip())
    check_compressions(compress)
    return SampleRequest(outdir=ns.outdir, spec=spec, compress=compress)
