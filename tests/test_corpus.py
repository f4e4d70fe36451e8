"""The public corpus of odd real-world files, end to end.

pydicom's own test files and the `pydicom-data` package (238 files in all: every
transfer syntax, big endian, deflate, private and UN sequences, broken and
truncated files, DICOMDIRs, non-DICOM files) are stored with dicomscu to DCMTK
``storescp +xa``, to Orthanc and to ``dicomscu serve``, then retrieved back from
serve and from Orthanc with ``--get`` and ``--move --accept-all-syntaxes``.  Each
file must arrive with a data set equal to the original's, element by element, or
be refused for a reason listed here.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pydicom
import pytest

import dicomscu
from dicomscu import Peer
from dicomscu.files.probe import BadFile, probe
from dicomscu.operations.find import find
from dicomscu.operations.retrieve import RetrieveOptions, get, identifiers_from_answers, move
from dicomscu.query.build import build_query
from dicomscu.server.pacs import Pacs, ServerConfig

from peers import Orthanc, StoreSCP, free_port

MOVE_AE = "CORPUSSCU"
#: Studies per C-GET: a few, as a user retrieves them.  (All ~150 of them in one C-GET hold some 40
#: SOP classes; with Orthanc, which does not say in which syntax it holds each instance, 127 contexts
#: then cannot cover every class in every syntax, and Orthanc re-encodes what finds no context.)
STUDIES_PER_REQUEST = 16

#: Files that are not sendable instances, and why (a fragment of the one-line reason we print).
NOT_SENDABLE = {
    "README.txt": "not a DICOM file", "README": "not a DICOM file", "crayons.icc": "not a DICOM file",
    "rtplan.dump": "not a DICOM file", "rtstruct.dump": "not a DICOM file", "test1.json": "not a DICOM file",
    "test_PN.json": "not a DICOM file", "zipMR.gz": "not a DICOM file",
    "no_meta.dcm": "not a DICOM file",             # a stray byte before a raw data set
    "ExplVR_BigEndNoMeta.dcm": "not a DICOM file",  # a big endian data set with no meta to say so
    "DICOMDIR": "DICOMDIR", "DICOMDIR-bigEnd": "DICOMDIR", "DICOMDIR-empty.dcm": "DICOMDIR",
    "DICOMDIR-implicit": "DICOMDIR", "DICOMDIR-nooffset": "DICOMDIR", "DICOMDIR-nopatient": "DICOMDIR",
    "DICOMDIR-reordered": "DICOMDIR",
    "bad_sequence.dcm": "invalid SOP Instance UID",
    "emri_small_jpeg_2k_lossless_too_short.dcm": "truncated", "MR_truncated.dcm": "truncated",
    "rtplan_truncated.dcm": "truncated",
    "SC_rgb_jpeg.dcm": "invalid VR",               # an Implicit VR data set labelled Explicit
    "meta_missing_tsyntax.dcm": "no Transfer Syntax UID",
    "empty_charset_LEI.dcm": "no SOP Class UID", "nested_priv_SQ.dcm": "no SOP Class UID",
    "UN_sequence.dcm": "no SOP Class UID", "no_meta_group_length.dcm": "no SOP Class UID",
    "priv_SQ.dcm": "no SOP Class UID",
}


def corpus_files() -> list[Path]:
    import pydicom.data

    roots = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        import data_store  # pydicom-data
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("pydicom-data is not installed (pip install pydicom-data)")
    roots.append(Path(data_store.__file__).parent / "data")
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def corpus():
    """(sendable files grouped in rounds of distinct SOP Instance UIDs, {name: reason} of the others)."""
    return rounds_of(corpus_files())


def rounds_of(files: list[Path]) -> tuple[list[list[Path]], dict[str, str]]:
    """`files` in rounds of distinct SOP Instance UIDs (a round is sent at once), and {name: reason} of the
    files that are no instances."""
    sendable: dict[str, list[Path]] = defaultdict(list)
    refused = {}
    for path in files:
        try:
            info = probe(path.read_bytes())
        except BadFile as exc:
            refused[path.name] = str(exc)
            continue
        sendable[info.sop_instance].append(path)
    rounds = [[paths[n] for paths in sendable.values() if len(paths) > n]
              for n in range(max(map(len, sendable.values())))]
    return rounds, refused


def same_data_set(original: Path, received: Path) -> bool:
    """Equal element by element, leaving aside what carries no data and receivers may recompute or drop:
    group lengths (gggg,0000, retired) and Data Set Trailing Padding (FFFC,FFFC).

    Pixel data is compared by value: as bytes when the transfer syntax is the same (several files
    label encapsulated data OW where receivers write the OB that PS3.5 A.4 requires), as decoded
    pixels when the receiver re-encoded the instance (Orthanc sends big endian data little endian).
    """
    first, second = (pydicom.dcmread(path, force=True) for path in (original, received))
    syntaxes = [probe(path.read_bytes()).transfer_syntax for path in (original, received)]
    for ds, syntax in zip((first, second), syntaxes):
        ds.file_meta.TransferSyntaxUID = syntax  # a raw data set's, as the probe found it
    same_syntax = syntaxes[0] == syntaxes[1]
    try:
        pixels = [ds.pixel_array if not same_syntax and "PixelData" in ds else ds.get("PixelData")
                  for ds in (first, second)]
    except Exception:  # no decoder can read one of them: they cannot be shown equal
        return False
    for ds in (first, second):
        for tag in [tag for tag in ds.keys() if tag.element == 0 or tag in (0xFFFCFFFC, 0x7FE00010)]:
            del ds[tag]
        _drop_padding(ds)
    if same_syntax or pixels[0] is None or pixels[1] is None:
        equal_pixels = pixels[0] == pixels[1]
    else:
        import numpy

        equal_pixels = numpy.array_equal(pixels[0], pixels[1])
    return first == second and equal_pixels


def _drop_padding(ds) -> None:
    """Data Set Trailing Padding inside sequence items too (DCMTK drops it wherever it is)."""
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                if 0xFFFCFFFC in item:
                    del item[0xFFFCFFFC]
                _drop_padding(item)


def by_uid(folder: Path) -> dict[str, Path]:
    return {probe(p.read_bytes()).sop_instance: p for p in folder.rglob("*") if p.is_file()
            and not p.name.endswith((".sqlite", ".sqlite-wal", ".sqlite-shm", ".log", ".lock"))
            and not p.name.startswith(".dicomscu-")}  # serve's own (its lock, its clean-stop mark)


def test_files_that_are_not_instances_are_refused_for_their_reason(corpus):
    _, refused = corpus
    assert set(refused) == set(NOT_SENDABLE), sorted(set(refused) ^ set(NOT_SENDABLE))
    for name, reason in refused.items():
        assert NOT_SENDABLE[name] in reason, (name, reason)


#: deid-data's files made invalid on purpose, on which DCMTK and Orthanc abort the association: elements in
#: the private groups PS3.5 7.8.1 forbids ((0007,xxxx) sequences without a creator), and a private block
#: whose creator slot holds a UV beside an element of odd length (0011,0011), which PS3.5 7.1.1 forbids.
FORBIDDEN_GROUP = {"deid-humans-ctbrain2.dcm": "A-ABORT", "deid-humans-ctbrain1.dcm": "A-ABORT"}
#: Instances a receiver refuses, and why (not dicomscu's doing: DCMTK's own storescu fails on them too).
REFUSED_BY = {
    "storescp": {**FORBIDDEN_GROUP,
        # every element is labelled UN, so DCMTK finds no SOP Class UID ("No SOP Class or Instance UID")
        "explicit_VR-UN.dcm": "0xC000", "rtdose_rle.dcm": "0xC000", "rtdose_rle_1frame.dcm": "0xC000",
    },
    "serve": {
        # no Study or Series Instance UID: a PACS files every instance under both
        "JPEGLSNearLossless_08.dcm": "0xA900", "JPEGLSNearLossless_16.dcm": "0xA900",
        "SC_rgb_jls_lossy_line.dcm": "0xA900", "SC_rgb_jls_lossy_sample.dcm": "0xA900",
    },
    "orthanc": {**FORBIDDEN_GROUP,
        "explicit_VR-UN.dcm": "0xC000", "rtdose_rle.dcm": "0xC000", "rtdose_rle_1frame.dcm": "0xC000",
        "JPEGLSNearLossless_08.dcm": "0xA700", "JPEGLSNearLossless_16.dcm": "0xA700",
        "SC_rgb_jls_lossy_line.dcm": "0xA700", "SC_rgb_jls_lossy_sample.dcm": "0xA700",
    },
}

#: Instances a server re-encodes on the way back, so that they come back different, and why.
CHANGED_BY: dict[str, set[str]] = {}


def store_round(peer: Peer, files: list[Path], receiver: str, problems: list) -> list:
    """Store one round; the results of the instances that arrived (problems noted for the others)."""
    results = []
    dicomscu.store(peer, list(map(str, files)), on_result=results.append)
    arrived = []
    for result in results:
        name = Path(result.path).name
        if result.outcome == "ok":
            arrived.append(result)
        elif name not in REFUSED_BY[receiver] or REFUSED_BY[receiver][name] not in result.message:
            problems.append((receiver, name, result.outcome, result.message))
    return arrived


def compare(arrived: list, received: dict[str, Path], receiver: str, problems: list) -> None:
    for result in arrived:
        copy = received.get(result.sop_instance)
        if copy is None:
            problems.append((receiver, Path(result.path).name, "missing", ""))
        elif Path(result.path).name not in CHANGED_BY.get(receiver, ()) and not same_data_set(Path(result.path), copy):
            problems.append((receiver, Path(result.path).name, "changed", str(copy)))


def retrieve_all(peer: Peer, out: Path, operation: str, problems: list, move_port: int | None = None
                 ) -> dict[str, Path]:
    """Every study of `peer`, retrieved with --accept-all-syntaxes (by C-GET or C-MOVE to us)."""
    query = build_query("studyroot", "study", ["StudyInstanceUID"], charset="")
    answers = []
    find(peer, query, on_answer=answers.append)
    options = RetrieveOptions(output=str(out), accept_all_syntaxes=True, port_scp=move_port)
    out.mkdir(parents=True, exist_ok=True)
    identifiers = identifiers_from_answers(answers, query, "STUDY")
    per_request = STUDIES_PER_REQUEST if operation == "get" else len(identifiers) or 1  # a C-MOVE needs no contexts
    for start in range(0, len(identifiers), per_request):
        try:
            share = identifiers[start:start + per_request]
            report = (move if operation == "move" else get)(peer, query, options, identifiers=share)
            if report.write_errors:
                problems.append((f"{peer} {operation}", "write errors", report.write_errors))
        except dicomscu.DicomscuError as exc:
            problems.append((f"{peer} {operation}", "failed", str(exc)))
    return by_uid(out)


@pytest.fixture(scope="module")
def orthanc_for_corpus(tmp_path_factory):
    move_port = free_port()
    # (Orthanc waits DicomScpTimeout for the rest of a data set its parser lost track of, then aborts: the
    # deliberately broken files of the second corpus cost 30 s each with its default)
    peer = Orthanc(tmp_path_factory.mktemp("orthanc-corpus"),
                   modalities={MOVE_AE: [MOVE_AE, "127.0.0.1", move_port]}, DicomScpTimeout=5)
    yield peer, move_port
    peer.close()


def through_storescp(files: list[Path], work: Path, problems: list) -> None:
    scp = StoreSCP(work / "storescp", "+xa")
    try:
        arrived = store_round(Peer("127.0.0.1", scp.port, called_ae=scp.aetitle), files, "storescp", problems)
        compare(arrived, by_uid(scp.directory), "storescp", problems)
    finally:
        scp.close()


def through_serve(files: list[Path], work: Path, problems: list) -> None:
    move_port = free_port()
    pacs = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(work / "serve"),
                             destinations={MOVE_AE: ("127.0.0.1", move_port)}))
    pacs.start()
    try:
        peer = Peer("127.0.0.1", pacs.port, called_ae="DICOMSCU", calling_ae=MOVE_AE)
        arrived = store_round(peer, files, "serve", problems)
        compare(arrived, by_uid(work / "serve"), "serve", problems)
        compare(arrived, retrieve_all(peer, work / "serve-get", "get", problems), "serve --get", problems)
        compare(arrived, retrieve_all(peer, work / "serve-move", "move", problems, move_port), "serve --move",
                problems)
    finally:
        pacs.stop()


def through_orthanc(files: list[Path], work: Path, problems: list, orthanc: Orthanc, move_port: int) -> None:
    orthanc.clear()
    peer = Peer("127.0.0.1", orthanc.dicom_port, called_ae=orthanc.aetitle, calling_ae=MOVE_AE)
    arrived = store_round(peer, files, "orthanc", problems)
    compare(arrived, retrieve_all(peer, work / "orthanc-get", "get", problems), "orthanc --get", problems)
    compare(arrived, retrieve_all(peer, work / "orthanc-move", "move", problems, move_port), "orthanc --move",
            problems)


def test_every_instance_arrives_equal_everywhere_and_comes_back_equal(corpus, tmp_path, orthanc_for_corpus):
    """Each round of distinct instances goes through the three receivers at once (each on its own)."""
    rounds, _ = corpus
    _through_every_receiver(rounds, tmp_path, orthanc_for_corpus)


def test_the_second_corpus_arrives_equal_everywhere_and_comes_back_equal(tmp_path, orthanc_for_corpus):
    """deid-data, whole-slide microscopy in 11 transfer syntaxes and highdicom objects (tests/corpus_more.py),
    through DCMTK storescp, serve and Orthanc, and back by C-GET and C-MOVE, element by element."""
    import corpus_more

    rounds, refused = rounds_of(corpus_more.build(tmp_path / "corpus"))
    assert not refused and sum(map(len, rounds)) >= 50, refused
    _through_every_receiver(rounds, tmp_path, orthanc_for_corpus)


def _through_every_receiver(rounds: list[list[Path]], tmp_path: Path, orthanc_for_corpus) -> None:
    from concurrent.futures import ThreadPoolExecutor

    orthanc, orthanc_move_port = orthanc_for_corpus
    problems: list = []
    with ThreadPoolExecutor(3) as pool:
        for number, files in enumerate(rounds):
            work = tmp_path / f"round{number}"
            jobs = [pool.submit(through_storescp, files, work, problems),
                    pool.submit(through_serve, files, work, problems),
                    pool.submit(through_orthanc, files, work, problems, orthanc, orthanc_move_port)]
            for job in jobs:
                job.result()
    assert problems == [], "\n".join(map(str, problems))
