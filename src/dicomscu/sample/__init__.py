"""Sample DICOM studies: realistic, deterministic test data for loading and exercising a server.

One generator serves ``dicomscu sample``, ``dicomscu demo``, the tests and the
benchmarks.  A :class:`SampleSpec` describes a tree of patients, studies and series;
:func:`write_sample` writes it as Part 10 files with the attributes a PACS indexes
and a viewer needs (patient, study, series and image modules, geometry for CT and
MR), non-ASCII person names in UTF-8 (``ISO_IR 192``), and UIDs under
:data:`DICOMSCU_ROOT` (or a root of the user's).  The same spec always gives the
same files, byte for byte, so runs compare and a re-run only refreshes them.

Files are written to a temporary name and renamed (the writer retrieved instances
use), so an interrupted run never leaves a half-written ``.dcm``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Callable, Iterator

from dicomscu.errors import UsageError
from dicomscu.files.instances import write_atomically
from dicomscu.sample.phantom import Phantom
from dicomscu.sample.template import MetaTemplate, Template

DICOMSCU_ROOT = "1.2.826.0.1.3680043.10.1137"
"""The project's UID root: every sample UID is ``DICOMSCU_ROOT.<seed>.<kind>.<indices>``."""

NAMES = ("Müller^Jérôme", "Smith^John", "Anderson^Alice", "Ødegaard^Åse", "Brown^Bob", "Zhang^Wei",
         "Dupont^Zoé", "García^José")

IMPLEMENTATION_UID = DICOMSCU_ROOT + ".0.1"
IMPLEMENTATION_VERSION = "DICOMSCU_SAMPLE"

STUDY, SERIES, INSTANCE, FRAME_OF_REFERENCE = 1, 2, 3, 4  # the <kind> arc of sample UIDs

SOP_INSTANCE_UID, CONTENT_TIME, INSTANCE_NUMBER = 0x00080018, 0x00080033, 0x00200013
IMAGE_POSITION, SLICE_LOCATION, PIXEL_DATA = 0x00200032, 0x00201041, 0x7FE00010

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"


@dataclass(frozen=True)
class Modality:
    """What a series of one modality looks like: SOP class, matrix, values, module attributes."""

    code: str
    sop_class: str
    matrix: int
    tissue: int
    organ: int
    description: str
    attributes: dict = field(default_factory=dict)
    volume: bool = True  # slices with positions (CT, MR) rather than independent images


MODALITIES = {
    "CT": Modality("CT", "1.2.840.10008.5.1.4.1.1.2", 512, 1064, 1224, "CT chest", {
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"], "KVP": "120", "RescaleIntercept": "-1024",
        "RescaleSlope": "1", "RescaleType": "HU", "BodyPartExamined": "CHEST", "SliceThickness": "2.5",
        "WindowCenter": "40", "WindowWidth": "400", "ConvolutionKernel": "STANDARD"}),
    "MR": Modality("MR", "1.2.840.10008.5.1.4.1.1.4", 256, 600, 1400, "MR brain T2", {
        "ImageType": ["ORIGINAL", "PRIMARY", "M"], "ScanningSequence": "SE", "SequenceVariant": "NONE",
        "ScanOptions": "", "MRAcquisitionType": "2D", "RepetitionTime": "4000", "EchoTime": "90",
        "EchoTrainLength": "16", "MagneticFieldStrength": "1.5", "BodyPartExamined": "HEAD",
        "SliceThickness": "5"}),
    "CR": Modality("CR", "1.2.840.10008.5.1.4.1.1.1", 512, 1500, 2600, "CR chest PA", {
        "ImageType": ["ORIGINAL", "PRIMARY"], "BodyPartExamined": "CHEST", "ViewPosition": "PA"},
        volume=False),
    "OT": Modality("OT", "1.2.840.10008.5.1.4.1.1.7", 64, 900, 2000, "Secondary capture", {
        "ImageType": ["DERIVED", "SECONDARY"], "ConversionType": "WSD"}, volume=False),
}

COMPRESSIONS = {
    "deflate": DEFLATED_LE,                       # zlib: always available
    "rle": "1.2.840.10008.1.2.5",                 # RLE Lossless
    "jpeg2000": "1.2.840.10008.1.2.4.90",         # JPEG 2000 Lossless
}


@dataclass(frozen=True)
class SampleSpec:
    """A tree of sample data: ``patients`` x ``studies`` x ``series`` x ``images``.

    ``count``, when given, replaces ``images``: that many images in all, dealt round
    the series in turn (image i goes to series i mod the number of series), so any
    total spreads evenly over every patient.  ``first_patient`` offsets the patient
    numbers (and so IDs and UIDs), to write sets that coexist in one PACS.
    """

    patients: int = 2
    studies: int = 1
    series: int = 2
    images: int = 5
    count: int | None = None
    modalities: tuple[str, ...] = ("CT", "MR")
    matrix: int | None = None  # rows = columns; None: the modality's usual size
    syntax: str = EXPLICIT_LE  # EXPLICIT_LE or IMPLICIT_LE
    layout: str = "tree"       # "tree": PATIENT/STUDY/SERIES/IMnnnnn.dcm; "flat": LABEL_nnnnn.dcm
    label: str = "IM"
    seed: int = 1
    first_patient: int = 0
    root: str = DICOMSCU_ROOT

    def check(self) -> None:
        for name in ("patients", "studies", "series", "images"):
            if getattr(self, name) < 1:
                raise UsageError("must be at least 1", option=name)
        if self.count is not None and self.count < 0:
            raise UsageError("must not be negative", option="count")
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown or not self.modalities:
            raise UsageError(f"{', '.join(unknown) or '(none)'}: unknown modality; choose from {', '.join(MODALITIES)}",
                             option="modalities")
        if self.matrix is not None and not 8 <= self.matrix <= 4096:
            raise UsageError("must be between 8 and 4096", option="matrix")
        if self.syntax not in (EXPLICIT_LE, IMPLICIT_LE):
            raise UsageError("sample: the syntax must be Explicit or Implicit VR Little Endian")
        longest = self.uid(INSTANCE, self.first_patient + self.patients, self.studies, self.series, self.total)
        if len(longest) > 64:
            raise UsageError(f"'{self.root}' is too long: UIDs such as {longest} exceed 64 characters",
                             option="root")

    @property
    def total(self) -> int:
        return self.count if self.count is not None else self.patients * self.studies * self.series * self.images

    def uid(self, kind: int, *numbers: int) -> str:
        """The UID of a `kind` (STUDY, SERIES, INSTANCE...) at the given patient, study, series, image numbers."""
        return ".".join([self.root, str(self.seed), str(kind), *map(str, numbers)])


@dataclass(frozen=True)
class Instance:
    """Where one image sits in the tree (numbers count from 1, as DICOM's do)."""

    patient: int
    study: int
    series: int
    number: int       # InstanceNumber within its series
    of: int           # images in its series
    index: int        # position in the whole set (0-based), for flat file names


@dataclass
class SampleReport:
    files: list[Path]
    bytes: int
    patients: int
    studies: int
    series: int
    seconds: float


def instances(spec: SampleSpec) -> Iterator[Instance]:
    """Every image of the spec, in file order (dealt round the series, patient after patient)."""
    # patients turn fastest: any first N images cover as many patients as they can
    tree = [(p, st, se) for se in range(1, spec.series + 1) for st in range(1, spec.studies + 1)
            for p in range(1, spec.patients + 1)]
    total = spec.total
    per_series = [total // len(tree) + (1 if k < total % len(tree) else 0) for k in range(len(tree))]
    for index in range(total):
        k = index % len(tree)
        patient, study, series = tree[k]
        yield Instance(patient, study, series, index // len(tree) + 1, per_series[k], index)


def write_sample(outdir: str | os.PathLike, spec: SampleSpec = SampleSpec(),
                 compress: tuple[str, ...] = (), on_file: Callable[[Path], None] | None = None) -> SampleReport:
    """Write the spec's images under `outdir`; each `compress` name adds a copy in OUTDIR/<name>/.

    Compressed copies keep the same UIDs (the same instances in another transfer
    syntax).  ``rle`` and ``jpeg2000`` need the ``compressed`` extra (and numpy);
    ``deflate`` needs nothing.
    """
    spec.check()
    check_compressions(compress)
    started = time.perf_counter()
    out = Path(outdir)
    writer = _Writer(spec)
    files: list[Path] = []
    size = 0
    studies: set[tuple[int, int]] = set()
    series: set[tuple[int, int, int]] = set()
    for instance in instances(spec):
        studies.add((instance.patient, instance.study))
        series.add((instance.patient, instance.study, instance.series))
        relative = writer.relative_path(instance)
        part = writer.series(instance)
        elements = part.elements(instance)
        uid = elements[SOP_INSTANCE_UID].value
        paths = [out / relative]
        size += _write_atomically(paths[0], [*part.meta.render(uid), *part.template.render(elements)])
        if compress:
            ds = part.dataset(elements)
            for name in compress:
                paths.append(out / name / relative)
                size += _save(ds, paths[-1], COMPRESSIONS[name])
        files.extend(paths)
        if on_file is not None:
            for path in paths:
                on_file(path)
    patients = {patient for patient, _ in studies}
    return SampleReport(files, size, len(patients), len(studies), len(series), time.perf_counter() - started)


def write_bench_set(outdir: str | os.PathLike, big: int = 200, small: int = 2000, patients: int = 8) -> Path:
    """The benchmark and test set: big/ (CT 512x512, Explicit VR) and small/ (32x32 SC, Implicit VR).

    ``big`` and ``small`` are the numbers of files, spread over `patients` patients
    with 3 studies of 2 series each; small uses patients from 1000 on, so both sets
    can be loaded into one PACS.
    """
    out = Path(outdir)
    if big:
        write_sample(out / "big", SampleSpec(patients=patients, studies=3, series=2, count=big,
                                             modalities=("CT",), layout="flat", label="big"))
    if small:
        write_sample(out / "small", SampleSpec(patients=patients, studies=3, series=2, count=small,
                                               modalities=("OT",), matrix=32, syntax=IMPLICIT_LE,
                                               layout="flat", label="small", first_patient=1000))
    return out


class _Writer:
    """Encodes each image from its series' :class:`Template` (shared parts encoded once)."""

    def __init__(self, spec: SampleSpec) -> None:
        self.spec = spec
        self._series: dict[tuple[int, int, int], _Series] = {}

    def modality(self, instance: Instance) -> Modality:
        return MODALITIES[self.spec.modalities[(instance.series - 1) % len(self.spec.modalities)]]

    def relative_path(self, instance: Instance) -> Path:
        if self.spec.layout == "flat":
            return Path(f"{self.spec.label}_{instance.index:05d}.dcm")
        modality = self.modality(instance).code
        patient = self.spec.first_patient + instance.patient - 1
        return Path(f"PID{patient:04d}", f"ST{instance.study:02d}", f"SE{instance.series:02d}_{modality}",
                    f"{self.spec.label}{instance.number:05d}.dcm")

    def series(self, instance: Instance) -> "_Series":
        key = (instance.patient, instance.study, instance.series)
        if key not in self._series:
            if len(self._series) >= 1024:  # memory stays flat in the number of series
                self._series.clear()
            self._series[key] = _Series(self.spec, self.modality(instance), key)
        return self._series[key]


class _Series:
    """One series: its shared attributes, encoded once, and its phantom."""

    def __init__(self, spec: SampleSpec, modality: Modality, key: tuple[int, int, int]) -> None:
        from pydicom.dataset import Dataset

        self.spec, self.modality = spec, modality
        patient, st, se = key
        p = spec.first_patient + patient - 1
        self.p, self.st, self.se = p, st, se
        study_day = date(2024, 1, 1) + timedelta(days=(p * 37 + st * 11 + spec.seed * 5) % 700)
        self.matrix = matrix = spec.matrix or modality.matrix
        self.time = f"{8 + (p + st) % 10:02d}{(p * 7) % 60:02d}"
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.ImageType = modality.attributes.get("ImageType", ["ORIGINAL", "PRIMARY"])
        ds.SOPClassUID = modality.sop_class
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_day.strftime("%Y%m%d")
        ds.StudyTime = self.time + "00"
        ds.SeriesTime = f"{self.time}{se:02d}"
        ds.AccessionNumber = f"ACC{p:04d}{st:02d}"
        ds.Modality = modality.code
        ds.Manufacturer = "dicomscu"
        ds.InstitutionName = "dicomscu sample hospital"
        ds.ReferringPhysicianName = "Référent^Claire"
        ds.StudyDescription = f"Study {st} of {NAMES[p % len(NAMES)].replace('^', ' ')}"
        ds.SeriesDescription = f"{modality.description} {se}"
        ds.PatientName = NAMES[p % len(NAMES)]
        ds.PatientID = f"PID{p:04d}"
        ds.PatientBirthDate = f"19{50 + p % 50:02d}0{1 + p % 9}1{p % 10}"
        ds.PatientSex = "MF"[p % 2]
        for keyword, value in modality.attributes.items():
            if keyword != "ImageType":
                setattr(ds, keyword, value)
        ds.StudyInstanceUID = spec.uid(STUDY, p, st)
        ds.SeriesInstanceUID = spec.uid(SERIES, p, st, se)
        ds.StudyID = f"S{st}"
        ds.SeriesNumber = se
        ds.AcquisitionNumber = 1
        if modality.volume:
            ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
            ds.FrameOfReferenceUID = spec.uid(FRAME_OF_REFERENCE, p, st)
            ds.PositionReferenceIndicator = ""
            ds.PixelSpacing = ["0.7", "0.7"]
        else:
            ds.PatientOrientation = ["L", "F"] if modality.code == "CR" else ""
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = matrix
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        self.shared = ds
        varying = [SOP_INSTANCE_UID, CONTENT_TIME, INSTANCE_NUMBER, PIXEL_DATA]
        if modality.volume:
            varying += [IMAGE_POSITION, SLICE_LOCATION]
        self.template = Template(ds, varying, implicit_vr=spec.syntax == IMPLICIT_LE)
        self.meta = MetaTemplate(modality.sop_class, spec.syntax, IMPLEMENTATION_UID, IMPLEMENTATION_VERSION)
        seed = ((spec.seed * 1_000_003 + p) * 1009 + st) * 101 + se
        self.phantom = Phantom(matrix, matrix, modality.tissue, modality.organ, seed=seed)

    def elements(self, instance: Instance) -> dict:
        """The elements that differ from image to image."""
        from pydicom.dataelem import DataElement

        im = instance.number
        found = {
            SOP_INSTANCE_UID: DataElement(SOP_INSTANCE_UID, "UI", self.spec.uid(INSTANCE, self.p, self.st, self.se, im)),
            CONTENT_TIME: DataElement(CONTENT_TIME, "TM", f"{self.time}{im % 60:02d}"),
            INSTANCE_NUMBER: DataElement(INSTANCE_NUMBER, "IS", str(im)),
            PIXEL_DATA: DataElement(PIXEL_DATA, "OW", self.phantom.slice(im - 1, instance.of)),
        }
        if self.modality.volume:
            spacing = float(self.modality.attributes.get("SliceThickness", "1"))
            position = f"{-0.5 * spacing * instance.of + spacing * (im - 1):g}"
            corner = f"{-self.matrix * 0.35:g}"
            found[IMAGE_POSITION] = DataElement(IMAGE_POSITION, "DS", [corner, corner, position])
            found[SLICE_LOCATION] = DataElement(SLICE_LOCATION, "DS", position)
        return found

    def dataset(self, elements: dict):
        """The whole data set as pydicom's (for the copies pydicom encodes)."""
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import UID

        ds = Dataset(dict(self.shared.items()))  # a new mapping: the shared one stays as it is
        for element in elements.values():
            ds.add(element)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
        ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION
        return ds


def check_compressions(names: tuple[str, ...]) -> None:
    for name in names:
        if name not in COMPRESSIONS:
            raise UsageError(f"'{name}': unknown compression; choose from {', '.join(COMPRESSIONS)}",
                             option="compress")
        if name != "deflate":
            try:
                import numpy  # noqa: F401
                import pylibjpeg  # noqa: F401
            except ImportError:
                raise UsageError(f"{name} needs the compressed extra: pip install 'dicomscu[compressed]'",
                                 option="compress") from None


def _write_atomically(path: Path, chunks: list[bytes]) -> int:
    """Write `chunks` to `path` (a temporary name, then renamed); the number of bytes."""
    write_atomically(path, chunks)
    return sum(map(len, chunks))


def _save(ds, path: Path, syntax: str) -> int:
    """Write `ds` in `syntax` (deflated or compressed, encoded by pydicom) to `path` atomically."""
    from pydicom.filebase import DicomBytesIO

    target = ds if syntax == DEFLATED_LE else _compressed(ds, syntax)
    target.file_meta.TransferSyntaxUID = syntax
    buffer = DicomBytesIO()
    target.save_as(buffer, enforce_file_format=True)
    return _write_atomically(path, [buffer.getvalue()])


def _compressed(ds, syntax: str):
    """A copy of `ds` with its pixel data encoded in `syntax` (pydicom's encoders via pylibjpeg)."""
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID

    copied = Dataset(dict(ds.items()))  # elements shared: it gets its own pixel data and file meta to change
    copied[PIXEL_DATA] = DataElement(PIXEL_DATA, "OW", ds.PixelData)
    copied.file_meta = FileMetaDataset(ds.file_meta)
    copied.file_meta.TransferSyntaxUID = UID(EXPLICIT_LE)
    try:
        copied.compress(syntax, generate_instance_uid=False, encoding_plugin="pylibjpeg" if syntax == COMPRESSIONS["jpeg2000"] else "")
    except Exception as exc:
        raise UsageError(f"sample: cannot encode {syntax}: {exc}") from None
    return copied
