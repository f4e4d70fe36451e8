"""C-STORE against DCMTK storescp and Orthanc: what arrives is exactly what was sent."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from pynetdicom.sop_class import CTImageStorage

import dicomscu
from dicomscu import Peer

from conftest import run_dicomscu
from peers import free_port, storage_scp


def sop_uids(paths) -> dict[str, Dataset]:
    found = {}
    for path in paths:
        ds = pydicom.dcmread(path)
        found[ds.SOPInstanceUID] = ds
    return found


def all_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def test_store_directory_identical_uids_and_pixels(storescp, dataset_dir):
    result = run_dicomscu("--store", "127.0.0.1", str(storescp.port), "--call", storescp.aetitle,
                          str(dataset_dir / "big"), str(dataset_dir / "small"))
    assert result.returncode == 0, result.stderr
    sent = sop_uids(all_files(dataset_dir))
    received = sop_uids(storescp.received())
    assert set(received) == set(sent) and len(sent) == 66
    for uid, original in sent.items():
        assert received[uid].PixelData == original.PixelData
        assert received[uid].SOPClassUID == original.SOPClassUID
    assert "66 of 66 file(s) stored" in result.stdout
    assert "0 failed" in result.stdout


def test_one_association_for_many_files(storescp, dataset_dir):
    result = run_dicomscu("--store", "127.0.0.1", str(storescp.port), str(dataset_dir / "small"))
    assert result.returncode == 0, result.stderr
    assert storescp.log_text().count("Association Acknowledged") == 1


def test_junk_mixed_in_is_reported_once_each_and_the_rest_sent(storescp, dataset_dir, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(dataset_dir / "small", mixed)
    (mixed / "notes.txt").write_text("not DICOM at all\n")
    (mixed / "empty.dcm").write_bytes(b"")
    original = (dataset_dir / "small" / "small_00000.dcm").read_bytes()
    (mixed / "truncated.dcm").write_bytes(original[: len(original) - 100])
    os.symlink(mixed / "gone.dcm", mixed / "broken-link.dcm")
    result = run_dicomscu("--store", "127.0.0.1", str(storescp.port), str(mixed))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    for name, reason in [("notes.txt", "not a DICOM file"), ("empty.dcm", "empty file"),
                         ("truncated.dcm", "truncated"), ("broken-link.dcm", "broken symbolic link")]:
        matching = [line for line in lines if name in line]
        assert len(matching) == 1, (name, lines)
        assert reason in matching[0]
    # truncated.dcm has the same SOP Instance UID as small_00000.dcm, which is whole.
    assert len(storescp.received()) == 60
    assert "60 of 64 file(s) stored" in result.stdout and "4 skipped" in result.stdout


def test_recursive_and_top_level_only(storescp, dataset_dir, tmp_path):
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    shutil.copy(dataset_dir / "small" / "small_00001.dcm", tree)
    shutil.copy(dataset_dir / "small" / "small_00002.dcm", tree / "a")
    shutil.copy(dataset_dir / "small" / "small_00003.dcm", tree / "a" / "b")
    os.symlink(tree, tree / "a" / "loop")  # a directory loop must not hang -r
    flat = dicomscu.store(Peer("127.0.0.1", storescp.port), [str(tree)])
    assert flat.stored == 1
    results = []
    deep = dicomscu.store(Peer("127.0.0.1", storescp.port), [str(tree)], recursive=True,
                          on_result=results.append)
    assert deep.stored == 3
    loops = [r for r in results if "directory loop" in r.message]
    assert len(loops) == 1


def test_store_to_orthanc(clean_orthanc, dataset_dir):
    result = run_dicomscu("--store", "127.0.0.1", str(clean_orthanc.dicom_port), "--call",
                          clean_orthanc.aetitle, "-i", str(dataset_dir / "big"), "-i", str(dataset_dir / "small"))
    assert result.returncode == 0, result.stderr
    assert clean_orthanc.instance_uids() == set(sop_uids(all_files(dataset_dir)))


def test_more_than_128_contexts_split_into_associations(storescp, tmp_path, dataset_dir):
    """70 SOP classes x (Explicit LE + Implicit LE fallback) = 140 contexts: two associations."""
    from dicomscu.storage_classes import STORAGE_UIDS

    template = pydicom.dcmread(dataset_dir / "small" / "small_00000.dcm")
    classes = sorted(uid for uid in STORAGE_UIDS if "1.2.840.10008.5.1.4.1.1." in uid)[:70]
    folder = tmp_path / "many"
    folder.mkdir()
    for index, sop_class in enumerate(classes):
        ds = template.copy()
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"f{index:03d}.dcm", enforce_file_format=True)
    results = []
    report = dicomscu.store(Peer("127.0.0.1", storescp.port), [str(folder)], on_result=results.append)
    # DCMTK 3.6.7 predates a few of pynetdicom's storage classes: those are refused, per file.
    refused = [r for r in results if r.outcome == "failed"]
    assert all("does not accept" in r.message for r in refused)
    assert report.stored + len(refused) == 70 and report.stored >= 60
    assert len(storescp.received()) == report.stored
    assert storescp.log_text().count("Association Acknowledged") == 2


@pytest.fixture
def explicit_refusing_scp(tmp_path):
    """A pynetdicom SCP that accepts CT Image Storage in Implicit VR LE only, and keeps what it gets."""
    received = {}

    def on_store(event):
        ds = event.dataset
        received[ds.SOPInstanceUID] = ds
        return 0x0000

    with storage_scp("IMPLICIT", [CTImageStorage], on_store) as port:
        yield port, received


def test_explicit_file_converted_when_only_implicit_accepted(explicit_refusing_scp, dataset_dir):
    port, received = explicit_refusing_scp
    big = sorted((dataset_dir / "big").iterdir())[:2]
    report = dicomscu.store(Peer("127.0.0.1", port), [str(p) for p in big])
    assert report.stored == 2
    for path in big:
        original = pydicom.dcmread(path)
        assert received[original.SOPInstanceUID].PixelData == original.PixelData


def test_compressed_file_refused_per_file_others_sent(explicit_refusing_scp, dataset_dir, tmp_path):
    port, received = explicit_refusing_scp
    ds = pydicom.dcmread(sorted((dataset_dir / "big").iterdir())[0])
    meta = FileMetaDataset(ds.file_meta)
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta = meta
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8fakejpeg\xff\xd9"])
    ds["PixelData"].VR = "OB"
    compressed = tmp_path / "jpeg.dcm"
    ds.save_as(compressed, enforce_file_format=True)
    good = sorted((dataset_dir / "big").iterdir())[1]
    results = []
    report = dicomscu.store(Peer("127.0.0.1", port), [str(compressed), str(good)], on_result=results.append)
    assert report.stored == 1 and report.counts["failed"] == 1
    failure = next(r for r in results if r.outcome == "failed")
    assert "JPEG Baseline" in failure.message and "CT Image Storage" in failure.message


def test_failure_status_is_decoded(tmp_path, dataset_dir):
    from pynetdicom.sop_class import SecondaryCaptureImageStorage

    with storage_scp("FULL", [SecondaryCaptureImageStorage], lambda event: 0xA702) as port:
        result = run_dicomscu("--store", "127.0.0.1", str(port), str(dataset_dir / "small" / "small_00004.dcm"))
    assert result.returncode == 1
    assert "0xA702 failure: Refused: Out of Resources" in result.stderr


def test_store_connection_refused_exit_code(dataset_dir):
    result = run_dicomscu("--store", "127.0.0.1", str(free_port()), str(dataset_dir / "small"))
    assert result.returncode == 3
    assert "60 not sent" in result.stdout
    assert result.stderr.count("connection refused") == 1


def test_ten_thousand_files_in_one_directory_no_descriptor_leak(storescp, dataset_dir, tmp_path):
    """10,000 entries (junk and DICOM): each reported once, all DICOM sent, no file descriptor left open."""
    folder = tmp_path / "many"
    folder.mkdir()
    sources = sorted((dataset_dir / "small").iterdir())[:20]
    for index in range(10_000):
        target = folder / f"f{index:05d}.dcm"
        if index % 500 == 0:
            shutil.copy(sources[index // 500], target)
        else:
            target.write_bytes(b"junk %d\n" % index)
    open_before = len(os.listdir("/proc/self/fd"))
    results = []
    report = dicomscu.store(Peer("127.0.0.1", storescp.port), [str(folder)], on_result=results.append)
    assert report.stored == 20 and report.counts["skipped"] == 9_980
    assert len(results) == 10_000
    assert len(os.listdir("/proc/self/fd")) <= open_before + 2


@pytest.fixture
def uncompressed_only_scp():
    """A pynetdicom SCP accepting MR and SC storage in Implicit VR LE only."""
    from pynetdicom.sop_class import MRImageStorage, SecondaryCaptureImageStorage

    received = {}

    def on_store(event):
        received[event.dataset.SOPInstanceUID] = event.dataset
        return 0x0000

    with storage_scp("RAWONLY", [MRImageStorage, SecondaryCaptureImageStorage], on_store) as port:
        yield port, received


def test_refused_compressed_file_is_decompressed(uncompressed_only_scp):
    from pydicom.data import get_testdata_file

    port, received = uncompressed_only_scp
    rle = get_testdata_file("MR_small_RLE.dcm")
    report = dicomscu.store(Peer("127.0.0.1", port), [rle])
    assert report.stored == 1, report
    original = pydicom.dcmread(rle)
    original.decompress(generate_instance_uid=False)
    got = received[original.SOPInstanceUID]
    assert got.PixelData == original.PixelData


def test_undecodable_compressed_file_names_the_syntax_and_the_fix(uncompressed_only_scp, dataset_dir, tmp_path):
    port, _ = uncompressed_only_scp
    ds = pydicom.dcmread(sorted((dataset_dir / "small").iterdir())[0])
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder for it here
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00\x00\x01\xb3 not really MPEG2"])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "mpeg2.dcm"
    ds.save_as(path, enforce_file_format=True)
    results = []
    report = dicomscu.store(Peer("127.0.0.1", port), [str(path)], on_result=results.append)
    assert report.counts["failed"] == 1
    assert "MPEG2" in results[0].message and "no decoder exists" in results[0].message
    assert "gdcmconv" in results[0].message


def test_dicomdir_is_skipped_with_a_clear_reason(storescp, dataset_dir, tmp_path):
    from pydicom.data import get_testdata_file

    folder = tmp_path / "cd"
    folder.mkdir()
    shutil.copy(get_testdata_file("DICOMDIR"), folder / "DICOMDIR")
    shutil.copy(sorted((dataset_dir / "small").iterdir())[0], folder / "IMG1")
    results = []
    report = dicomscu.store(Peer("127.0.0.1", storescp.port), [str(folder)], on_result=results.append)
    assert report.stored == 1
    skipped = [r for r in results if r.outcome == "skipped"]
    assert len(skipped) == 1 and "DICOMDIR" in skipped[0].message


def test_pipes_devices_and_folders_without_r_are_reported_once(storescp, dataset_dir, tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    shutil.copy(dataset_dir / "small" / "small_00001.dcm", tree / "one.dcm")
    shutil.copy(dataset_dir / "small" / "small_00002.dcm", tree / "sub" / "two.dcm")
    os.mkfifo(tree / "a-pipe")
    os.mkfifo(tree / "sub" / "deep-pipe")
    os.symlink("/dev/null", tree / "a-device")
    result = run_dicomscu("--store", "127.0.0.1", str(storescp.port), "-r", str(tree), timeout=60)
    lines = [line for line in result.stderr.splitlines() if "not a regular file" in line]
    assert sorted(Path(line.split(": ")[1]).name for line in lines) == ["a-device", "a-pipe", "deep-pipe"], lines
    assert "2 of 5 file(s) stored" in result.stdout and result.returncode == 1
    only_folders = tmp_path / "only-folders"
    (only_folders / "study").mkdir(parents=True)
    shutil.copy(dataset_dir / "small" / "small_00001.dcm", only_folders / "study")
    hint = run_dicomscu("--store", "127.0.0.1", str(storescp.port), str(only_folders))
    assert "add -r" in hint.stderr and hint.returncode == 1
