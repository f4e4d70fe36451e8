"""serve as a viewer's backend: WADO-RS metadata and frames (PS3.18 10.4), checked against pydicom's reading of
the same files: single- and multi-frame, native little and big endian, 1-bit, and JPEG kept compressed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import generate_frames

from test_access import Server, _stow_body

FILES = ["CT_small.dcm", "emri_small.dcm", "MR_small_bigendian.dcm", "SC_rgb_jpeg_dcmtk.dcm", "liver_1frame.dcm",
         "SC_rgb.dcm", "SC_rgb_rle_2frame.dcm", "emri_small_jpeg_2k_lossless.dcm", "SC_ybr_full_uncompressed.dcm"]


@pytest.fixture(scope="module")
def viewer_server(tmp_path_factory):
    paths = [Path(get_testdata_file(name)) for name in FILES]
    with Server(tmp_path_factory.mktemp("viewer")) as server:
        body, headers = _stow_body(*paths)
        status, _, answer = server.request("POST", "/studies", headers, body)
        assert status == 200, answer
        yield server, {pydicom.dcmread(path).SOPInstanceUID: path for path in paths}


def _parts(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    boundary = re.search(r"boundary=([^;]+)", content_type).group(1).strip('"')  # type: ignore[union-attr]
    pieces = body.split(b"--" + boundary.encode())[1:-1]
    parts = []
    for piece in pieces:
        head, _, data = piece.partition(b"\r\n\r\n")
        parts.append((head.decode().strip(), data[:-2]))
    return parts


def _url_path(ds) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def test_series_metadata_is_each_instance_as_dicom_json_with_pixels_by_reference(viewer_server):
    server, originals = viewer_server
    for uid, path in originals.items():
        ds = pydicom.dcmread(path)
        series = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata"
        status, headers, body = server.request("GET", series)
        assert status == 200 and headers["Content-Type"] == "application/dicom+json"
        (document,) = [item for item in json.loads(body) if item["00080018"]["Value"] == [uid]]
        pixel = document["7FE00010"]
        assert "InlineBinary" not in pixel and pixel["BulkDataURI"].endswith(_url_path(ds) + "/frames/1")
        expected = pydicom.dcmread(path, stop_before_pixels=True)
        assert pydicom.Dataset.from_json({k: v for k, v in document.items() if k != "7FE00010"}) == expected


def _expected_frames(path: Path) -> list[bytes]:
    ds = pydicom.dcmread(path)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if ds.BitsAllocated == 1:
        bits = numpy.unpackbits(numpy.frombuffer(ds.PixelData, numpy.uint8), bitorder="little")
        size = ds.Rows * ds.Columns
        return [numpy.packbits(bits[n * size:(n + 1) * size], bitorder="little").tobytes() for n in range(count)]
    if not ds.file_meta.TransferSyntaxUID.is_compressed:  # native frames go as stored: no colour conversion
        ds.pixel_array_options(as_rgb=False)
    array = ds.pixel_array if count > 1 else ds.pixel_array[None, ...]
    return [numpy.ascontiguousarray(frame).astype(frame.dtype.newbyteorder("<")).tobytes() for frame in array]


@pytest.mark.parametrize("name", FILES)
def test_frames_are_pydicoms_pixels_little_endian(viewer_server, name):
    server, originals = viewer_server
    path = Path(get_testdata_file(name))
    ds = pydicom.dcmread(path)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    asked = sorted({1, count, (count + 1) // 2})
    status, headers, body = server.request("GET", _url_path(ds) + "/frames/" + ",".join(map(str, asked)),
                                           {"Accept": 'multipart/related; type="application/octet-stream"'})
    assert status == 200, body[:300]
    parts = _parts(body, headers["Content-Type"])
    expected = _expected_frames(path)
    assert [data for _, data in parts] == [expected[n - 1] for n in asked]
    assert all("transfer-syntax=1.2.840.10008.1.2.1" in head for head, _ in parts)


def test_compressed_frames_come_as_stored_when_any_syntax_is_accepted(viewer_server):
    server, _ = viewer_server
    path = Path(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    ds = pydicom.dcmread(path)
    status, headers, body = server.request(
        "GET", _url_path(ds) + "/frames/1",
        {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'})
    assert status == 200
    ((head, data),) = _parts(body, headers["Content-Type"])
    assert data == next(generate_frames(ds.PixelData, number_of_frames=1))
    assert f"transfer-syntax={ds.file_meta.TransferSyntaxUID}" in head


def test_frames_that_do_not_exist_or_are_not_numbers(viewer_server):
    server, _ = viewer_server
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert server.request("GET", _url_path(ds) + "/frames/2")[0] == 404
    assert server.request("GET", _url_path(ds) + "/frames/0")[0] == 404
    assert server.request("GET", _url_path(ds) + "/frames/one")[0] == 400
    assert server.request("GET", f"/studies/{ds.StudyInstanceUID}/series/1.2.3/metadata")[0] == 404


def test_qido_answers_carry_what_ps3_18_requires_and_validate_what_they_take(viewer_server):
    server, originals = viewer_server
    status, headers, body = server.request("GET", "/studies?fuzzymatching=true")
    assert status == 200 and headers.get("Warning", "").startswith("299 ")  # said, not silently ignored
    studies = json.loads(body)
    for study in studies:  # Table 10.6.3-3: counts and RetrieveURL
        uid = study["0020000D"]["Value"][0]
        assert study["00081190"]["Value"][0].endswith(f"/dicom-web/studies/{uid}")
        assert int(study["00201208"]["Value"][0]) >= 1 and int(study["00201206"]["Value"][0]) >= 1
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    status, _, body = server.request("GET", f"/studies/{ct.StudyInstanceUID}/series?includefield=all")
    (series,) = json.loads(body)
    assert series["00100010"]["Value"][0]["Alphabetic"] == str(ct.PatientName)  # the study's, with all
    assert series["00201209"]["Value"] == [1] and series["00081190"]["Value"][0].endswith(ct.SeriesInstanceUID)
    modalities = {pydicom.dcmread(path).Modality for path in originals.values()}
    status, _, body = server.request("GET", "/studies?ModalitiesInStudy=CT,MR&includefield=ModalitiesInStudy")
    found = {value for study in json.loads(body) for value in study["00080061"]["Value"]}
    assert status == 200 and {"CT", "MR"} <= found <= modalities  # a comma list is a list
    for bad in ("StudyDate=2020-13-45", "StudyDate=yesterday", "NumberOfFrames=x", "includefield=NoSuchThing"):
        assert server.request("GET", f"/studies?{bad}")[0] == 400, bad


@pytest.mark.parametrize("accept, status", [
    (None, 200), ('multipart/related; type="application/dicom"', 200), ("*/*", 200),
    ('multipart/related; type="application/dicom"; transfer-syntax=*', 200),
    ("application/dicom+json", 406), ("text/html", 406), ('multipart/related; type="image/jpeg"', 406),
])
def test_a_retrieval_answers_the_media_type_asked_for_or_406(viewer_server, accept, status):
    server, _ = viewer_server
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    headers = {"Accept": accept} if accept else {}
    assert server.request("GET", f"/studies/{ds.StudyInstanceUID}", headers)[0] == status


@pytest.mark.parametrize("name", FILES)
def test_rendered_and_thumbnail_pictures(viewer_server, name):
    """A picture of each instance, frame and series, in JPEG and PNG, decodable, of the instance's size (a
    thumbnail at most 128 a side), and not blank; window= is honoured."""
    import io

    from PIL import Image

    server, _ = viewer_server
    ds = pydicom.dcmread(get_testdata_file(name))
    instance = _url_path(ds)
    for path, accept in ((instance + "/rendered", "image/png"), (instance + "/frames/1/rendered", "image/jpeg"),
                         (f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/rendered", None)):
        status, headers, body = server.request("GET", path, {"Accept": accept} if accept else {})
        assert status == 200 and headers["Content-Type"] == (accept or "image/jpeg"), (path, body[:200])
        picture = Image.open(io.BytesIO(body))
        if path.endswith("/rendered") and "series" not in path.split("/")[-2:]:
            assert picture.size == (ds.Columns, ds.Rows)
        assert numpy.asarray(picture).std() > 0  # not blank
    status, _, body = server.request("GET", instance + "/thumbnail")
    assert status == 200 and max(Image.open(io.BytesIO(body)).size) <= 128
    assert server.request("GET", instance + "/rendered", {"Accept": "image/gif"})[0] == 406
    if ds.get("SamplesPerPixel", 1) == 1 and ds.BitsAllocated > 1:
        dark = server.request("GET", instance + "/rendered?window=100000,10", {"Accept": "image/png"})[2]
        assert numpy.asarray(Image.open(io.BytesIO(dark))).max() == 0  # everything below the window


def test_ohifs_own_dicomweb_client_loads_a_series(viewer_server, tmp_path):
    """npm's dicomweb-client (what OHIF uses) under Node: searchForStudies, searchForSeries,
    retrieveSeriesMetadata, retrieveInstanceFrames, retrieveInstanceRendered and storeInstances, each result
    checked against the original files."""
    import base64
    import io
    import subprocess

    from PIL import Image

    from test_senders import NODE_PEERS, _node

    server, originals = viewer_server
    path = Path(get_testdata_file("CT_small.dcm"))
    ds = pydicom.dcmread(path)
    to_store = Path(get_testdata_file("MR_small.dcm"))
    results = tmp_path / "results.json"
    run = subprocess.run([_node(), str(NODE_PEERS / "dicomweb_client.js"), server.url(), ds.StudyInstanceUID,
                          ds.SeriesInstanceUID, ds.SOPInstanceUID, str(to_store), str(results)],
                         capture_output=True, text=True, timeout=120, cwd=NODE_PEERS)
    out = json.loads(results.read_text())
    assert "error" not in out, (out.get("error"), run.stderr[-1000:])
    assert {study["0020000D"]["Value"][0] for study in out["studies"]} >= {
        pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID for p in originals.values()}
    assert ds.SeriesInstanceUID in {series["0020000E"]["Value"][0] for series in out["series"]}
    (metadata,) = [item for item in out["metadata"] if item["00080018"]["Value"] == [ds.SOPInstanceUID]]
    assert metadata["00280010"]["Value"] == [ds.Rows] and "BulkDataURI" in metadata["7FE00010"]
    assert base64.b64decode(out["frame"]) == _expected_frames(path)[0]
    assert Image.open(io.BytesIO(base64.b64decode(out["rendered"]))).size == (ds.Columns, ds.Rows)
    assert server.pacs.index.path_of(pydicom.dcmread(to_store).SOPInstanceUID) is not None


def test_a_large_value_in_metadata_is_a_bulkdata_uri_that_gives_its_bytes(viewer_server, tmp_path):
    server, _ = viewer_server
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.10.1137.42.1"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.1137.42", "1.2.826.0.1.3680043.10.1137.42.0"
    ds.add_new(0x00090010, "LO", "DICOMSCU TEST")
    payload = bytes(range(256)) * 400  # 100 KiB: past what is inlined
    ds.add_new(0x00091001, "OB", payload)
    path = tmp_path / "bulk.dcm"
    ds.save_as(path)
    body, headers = _stow_body(path)
    assert server.request("POST", "/studies", headers, body)[0] == 200
    status, _, body = server.request("GET", _url_path(ds) + "/metadata")
    (document,) = json.loads(body)
    uri = document["00091001"]["BulkDataURI"]
    assert "InlineBinary" not in document["00091001"] and uri.endswith(_url_path(ds) + "/bulkdata/00091001")
    status, headers, body = server.request("GET", uri[uri.index("/dicom-web") + len("/dicom-web"):])
    assert status == 200
    ((_, data),) = _parts(body, headers["Content-Type"])
    assert data == payload
    assert server.request("GET", _url_path(ds) + "/bulkdata/7FE00010")[0] == 404  # pixels: at /frames
    assert server.request("GET", _url_path(ds) + "/bulkdata/nothex!")[0] == 400


def test_json_answers_are_gzipped_for_a_client_that_takes_it(viewer_server):
    import gzip

    server, _ = viewer_server
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for path in ("/studies?includefield=all", f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata"):
        plain = server.request("GET", path)[2]
        status, headers, body = server.request("GET", path, {"Accept-Encoding": "gzip, deflate"})
        assert status == 200 and headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in headers["Vary"]
        assert json.loads(gzip.decompress(body)) == json.loads(plain) and len(body) < len(plain)


def test_the_viewer_requests_answer_as_orthancs_dicomweb_plugin_does(viewer_server, tmp_path):
    """The same requests to serve and to Orthanc's DICOMweb plugin, holding the same files: the same statuses,
    the same instances in searches and metadata, the same frame bytes, pictures of the same size."""
    import io
    import urllib.error
    import urllib.request

    from PIL import Image

    from peers import Orthanc

    server, _ = viewer_server
    files = [Path(get_testdata_file(name)) for name in ("CT_small.dcm", "emri_small.dcm")]
    orthanc = Orthanc(tmp_path / "orthanc", dicomweb=True)
    try:
        body, headers = _stow_body(*files)
        request = urllib.request.Request(orthanc.dicomweb_url + "/studies", data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200

        def ask(base: str, path: str, accept: str) -> tuple[int, dict, bytes]:
            try:
                with urllib.request.urlopen(urllib.request.Request(base + path, headers={"Accept": accept}),
                                            timeout=60) as response:
                    return response.status, dict(response.headers), response.read()
            except urllib.error.HTTPError as exc:
                return exc.code, dict(exc.headers), b""

        for ds in map(pydicom.dcmread, files):
            study, series = f"/studies/{ds.StudyInstanceUID}", f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            table = [
                (f"/studies?StudyInstanceUID={ds.StudyInstanceUID}", "application/dicom+json", "0020000D"),
                (study + "/series", "application/dicom+json", "0020000E"),
                (series + "/instances", "application/dicom+json", "00080018"),
                (series + "/metadata", "application/dicom+json", "00080018"),
                (_url_path(ds) + "/frames/1", 'multipart/related; type="application/octet-stream"', None),
                (_url_path(ds) + "/rendered", "image/png", None),
                ("/studies/1.2.3.4.5.6.7.8.9", 'multipart/related; type="application/dicom"', None),
            ]
            for path, accept, key in table:
                ours = ask(server.url(), path, accept)
                theirs = ask(orthanc.dicomweb_url, path, accept)
                assert ours[0] == theirs[0], (path, ours[0], theirs[0])
                if ours[0] != 200:
                    continue
                if key is not None:  # the same instances, series or studies
                    assert sorted(item[key]["Value"][0] for item in json.loads(ours[2])) == \
                        sorted(item[key]["Value"][0] for item in json.loads(theirs[2])), path
                elif accept.startswith("multipart"):
                    assert [data for _, data in _parts(ours[2], ours[1]["Content-Type"])] == \
                        [data for _, data in _parts(theirs[2], theirs[1]["Content-Type"])], path
                else:
                    assert Image.open(io.BytesIO(ours[2])).size == Image.open(io.BytesIO(theirs[2])).size, path
    finally:
        orthanc.close()


def test_instance_searches_give_rows_columns_and_frames(viewer_server):
    """PS3.18 Table 10.6.3-5: Rows, Columns, BitsAllocated and NumberOfFrames in each instance answer (kept in
    the index as the instance arrives: no file is read to answer)."""
    server, originals = viewer_server
    for uid, path in originals.items():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        status, _, body = server.request("GET", f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances")
        (answer,) = [item for item in json.loads(body) if item["00080018"]["Value"] == [uid]]
        assert answer["00280010"]["Value"] == [ds.Rows] and answer["00280011"]["Value"] == [ds.Columns]
        assert answer["00280100"]["Value"] == [ds.BitsAllocated]
        frames = answer.get("00280008", {}).get("Value")
        assert frames == ([int(ds.NumberOfFrames)] if "NumberOfFrames" in ds else None)


def test_an_index_from_an_earlier_version_opens_and_is_upgraded(tmp_path):
    """An index without the columns added since opens, gets them (empty until --reindex), and keeps its rows."""
    import sqlite3

    from dicomscu.server.index import COLUMNS, Index

    path = tmp_path / "index.sqlite"
    old = [c for c in COLUMNS if c not in ("rows", "columns", "bits_allocated", "number_of_frames")]
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE instances ({', '.join(c + ' TEXT' + (' PRIMARY KEY' if c == 'sop_uid' else '') for c in old)})")
        db.execute(f"INSERT INTO instances (sop_uid, study_uid, path) VALUES ('1.2.3', '1.2', 'x.dcm')")
    index = Index(str(path))
    try:
        (row,) = index.rows()
        assert row["sop_uid"] == "1.2.3" and row["rows"] is None and set(COLUMNS) <= set(row)
    finally:
        index.close()
