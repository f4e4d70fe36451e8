"""dicomscu sample: the one generator of test data, checked against pydicom and real peers."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from pydicom.filebase import DicomBytesIO

from conftest import run_dicomscu
from dicomscu.files.probe import probe, valid_uid
from dicomscu.sample import DICOMSCU_ROOT, SampleSpec, instances, write_bench_set, write_sample


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.dcm"))}


def test_same_spec_same_bytes_and_another_seed_other_uids(tmp_path):
    spec = SampleSpec(patients=2, studies=2, series=2, images=2, modalities=("CT", "MR", "CR", "OT"), matrix=48)
    write_sample(tmp_path / "a", spec)
    write_sample(tmp_path / "b", spec)
    assert digests(tmp_path / "a") == digests(tmp_path / "b") and len(digests(tmp_path / "a")) == 16
    write_sample(tmp_path / "c", SampleSpec(patients=2, studies=2, series=2, images=2, matrix=48, seed=2))
    first = {pydicom.dcmread(p).SOPInstanceUID for p in (tmp_path / "a").rglob("*.dcm")}
    other = {pydicom.dcmread(p).SOPInstanceUID for p in (tmp_path / "c").rglob("*.dcm")}
    assert not first & other


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
def test_files_are_exactly_what_pydicom_writes_for_the_same_data_set(tmp_path, syntax):
    """The fast template encoder must give pydicom's bytes: re-encoding a file changes nothing."""
    report = write_sample(tmp_path, SampleSpec(patients=1, series=4, images=3, syntax=syntax, matrix=32,
                                               modalities=("CT", "MR", "CR", "OT")))
    assert len(report.files) == 12
    for path in report.files:
        original = path.read_bytes()
        ds = pydicom.dcmread(path)
        buffer = DicomBytesIO()
        ds.save_as(buffer, enforce_file_format=True, implicit_vr=syntax == "1.2.840.10008.1.2")
        assert buffer.getvalue() == original, path
        info = probe(original)
        assert info.transfer_syntax == syntax and info.sop_instance == ds.SOPInstanceUID


def test_tree_structure_uids_names_and_geometry(tmp_path):
    spec = SampleSpec(patients=3, studies=2, series=2, images=4)
    report = write_sample(tmp_path, spec)
    assert (report.patients, report.studies, report.series, len(report.files)) == (3, 6, 12, 48)
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in report.files]
    uids = [ds.SOPInstanceUID for ds in datasets]
    assert len(set(uids)) == 48
    for ds in datasets:
        for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID):
            assert valid_uid(uid) and uid.startswith(DICOMSCU_ROOT + "."), uid
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SpecificCharacterSet == "ISO_IR 192"
    assert len({ds.PatientID for ds in datasets}) == 3
    assert len({ds.StudyInstanceUID for ds in datasets}) == 6
    assert Counter(ds.SeriesInstanceUID for ds in datasets).most_common()[-1][1] == 4
    assert {ds.Modality for ds in datasets} == {"CT", "MR"}
    assert any(not str(ds.PatientName).isascii() for ds in datasets)
    # each study's series are consistent: one patient, one study date, distinct series numbers
    for study in {ds.StudyInstanceUID for ds in datasets}:
        members = [ds for ds in datasets if ds.StudyInstanceUID == study]
        assert len({ds.PatientID for ds in members}) == len({ds.StudyDate for ds in members}) == 1
        assert {ds.SeriesNumber for ds in members} == {1, 2}
    # slices of a CT series are ordered along z, one slice thickness apart
    series = sorted((ds for ds in datasets if ds.Modality == "CT" and ds.SeriesInstanceUID == datasets[0].SeriesInstanceUID),
                    key=lambda ds: ds.InstanceNumber)
    z = [float(ds.ImagePositionPatient[2]) for ds in series]
    assert [round(b - a, 3) for a, b in zip(z, z[1:])] == [2.5] * 3
    assert (tmp_path / "PID0000" / "ST01" / "SE01_CT" / "IM00001.dcm").is_file()
    assert not list(tmp_path.rglob("*.part"))


def test_count_spreads_round_the_series_and_slices_differ(tmp_path):
    spec = SampleSpec(patients=2, studies=1, series=2, count=11, modalities=("OT",), matrix=16, layout="flat",
                      label="small")
    assert [i.number for i in instances(spec)][:5] == [1, 1, 1, 1, 2]
    report = write_sample(tmp_path, spec)
    assert sorted(p.name for p in report.files)[:2] == ["small_00000.dcm", "small_00001.dcm"]
    per_series = Counter(pydicom.dcmread(p).SeriesInstanceUID for p in report.files)
    assert sorted(per_series.values()) == [2, 3, 3, 3]
    pixels = {pydicom.dcmread(p).PixelData for p in report.files}
    assert len(pixels) > 1


def test_bench_set_layout(tmp_path):
    out = write_bench_set(tmp_path, big=4, small=10, patients=2)
    big = sorted((out / "big").iterdir())
    small = sorted((out / "small").iterdir())
    assert [p.name for p in big] == [f"big_{i:05d}.dcm" for i in range(4)] and len(small) == 10
    ct = pydicom.dcmread(big[0])
    sc = pydicom.dcmread(small[0])
    assert (ct.Rows, ct.Modality, ct.file_meta.TransferSyntaxUID) == (512, "CT", "1.2.840.10008.1.2.1")
    assert (sc.Rows, sc.Modality, sc.file_meta.TransferSyntaxUID) == (32, "OT", "1.2.840.10008.1.2")
    assert ct.PatientID == "PID0000" and sc.PatientID == "PID1000"
    assert ct.pixel_array.max() < 4096  # within BitsStored 12


def test_compressed_copies_decode_to_the_same_pixels(tmp_path):
    pytest.importorskip("pylibjpeg")
    report = write_sample(tmp_path, SampleSpec(patients=1, series=2, images=2, matrix=64),
                          compress=("deflate", "rle", "jpeg2000"))
    assert len(report.files) == 16
    for original in (tmp_path / "PID0000").rglob("*.dcm"):
        plain = pydicom.dcmread(original)
        for name, syntax in [("deflate", "1.2.840.10008.1.2.1.99"), ("rle", "1.2.840.10008.1.2.5"),
                             ("jpeg2000", "1.2.840.10008.1.2.4.90")]:
            copy = pydicom.dcmread(tmp_path / name / original.relative_to(tmp_path))
            assert copy.file_meta.TransferSyntaxUID == syntax
            assert copy.SOPInstanceUID == plain.SOPInstanceUID
            assert (copy.pixel_array == plain.pixel_array).all(), (name, original)


def test_sample_command_writes_and_the_files_store_to_storescp(tmp_path, storescp):
    out = tmp_path / "sample"
    result = run_dicomscu("sample", str(out), "--patients", "2", "--series", "3", "--images", "2",
                          "--modality", "ct,mr,cr", "--matrix", "64", "--implicit")
    assert result.returncode == 0, result.stderr
    assert "wrote 12 file(s) for 2 patient(s), 2 study(ies), 6 series" in result.stdout
    sent = run_dicomscu("--store", "127.0.0.1", str(storescp.port), "-r", str(out))
    assert sent.returncode == 0 and "12 of 12 file(s) stored" in sent.stdout, sent.stdout + sent.stderr
    received = {pydicom.dcmread(p).SOPInstanceUID for p in storescp.received()}
    assert received == {pydicom.dcmread(p).SOPInstanceUID for p in out.rglob("*.dcm")}


@pytest.mark.parametrize("args, message", [
    ([], "give the directory"),
    (["OUT", "--patients", "0"], "--patients must be at least 1"),
    (["OUT", "--images", "x"], "--images: 'x' is not a number"),
    (["OUT", "--modality", "PET"], "--modality PET: unknown modality"),
    (["OUT", "--compress", "zip"], "--compress 'zip': unknown compression"),
    (["OUT", "--matrix", "5"], "--matrix must be between 8 and 4096"),
    (["OUT", "--root-uid", "1.02.3"], "not a valid root UID"),
])
def test_sample_usage_errors(tmp_path, args, message):
    result = run_dicomscu("sample", *[str(tmp_path / a) if a == "OUT" else a for a in args])
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "dicomscu sample --help" in result.stderr
    assert not (tmp_path / "OUT").exists()
