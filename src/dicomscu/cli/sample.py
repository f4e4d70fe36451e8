"""``dicomscu sample OUTDIR [options]``: the sample-data command line, parsed into a SampleSpec."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from dicomscu.cli.options import SAMPLE_SECTIONS, add_to, render
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

""" + render(SAMPLE_SECTIONS) + """
Then, for example: dicomscu --store HOST PORT -r OUTDIR
"""
SAMPLE_OPTIONS = [option for _, options in SAMPLE_SECTIONS for option in options]


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
    add_to(p, SAMPLE_OPTIONS)
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
