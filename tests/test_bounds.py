"""serve is bounded by design: what one request or one client costs does not grow with the archive, the
size of what is sent, or how slowly it is sent.

* a query reads its answers' rows, not the archive: a QIDO-RS page of 1 over tens of thousands of
  instances matches a handful of rows (counted, not timed), and the SQL that selects them never leaves
  out a row that the matching rules accept (checked against a brute force over every row);
* QIDO-RS pages put together are the whole answer, in one stable order, and a large answer is streamed;
* a 200 MiB STOW-RS part costs serve's memory less than 50 MB, arrives byte for byte, and a body cut
  inside a spilled part leaves no file;
* one client address holds at most ``http_per_client`` connections, a body that trickles is cut off;
* a rejected association's requestor reads its rejection (the acceptor waits for it to close, PS3.8
  9.2), 300 of them at once against ``--max-associations 32`` included.
"""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from peers import free_port, wait_for_port
from test_access import Server, _stow_body

from dicomscu.server import index as index_module
from dicomscu.server.index import COLUMNS, LEVELS, UNIQUE, ATTRIBUTES, Index, _INSERT
from dicomscu.server.matching import matches

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _rows(count: int, seed: int = 7) -> list[dict[str, str]]:
    """`count` index rows over patients, studies and series, with values that exercise every key kind; each
    entity's attributes agree across its instances (as the level tables keep one value per entity)."""
    pick = random.Random(seed)
    patients, studies, series_of = {}, {}, {}
    rows = []
    for number in range(count):
        patient, study, series = number // 50, number // 10, number // 5
        if patient not in patients:
            patients[patient] = {
                "patient_id": f"P{patient:03d}",
                "patient_name": pick.choice(["DOE^JOHN", "doe^jane", "ROE^R", "", "Straße^Anna", "MÜLLER^Ö", "TAB\tNAME"]),
                "patient_birth_date": pick.choice(["19700101", "19851231", ""]), "patient_sex": pick.choice("MFO")}
        if study not in studies:
            studies[study] = {
                "study_uid": f"1.2.3.{study}", "study_date": pick.choice([f"2020{pick.randint(1, 12):02d}{pick.randint(1, 28):02d}", "", "2020-03-04",
                                           "0", "999999990"]),
                "study_time": pick.choice(["083000", "1200", "235959.5"]), "accession_number": f"A{study % 7}",
                "study_id": str(study % 3), "study_description": pick.choice(["CHEST", "HEAD CT", "chest"]),
                "referring_physician": ""}
        if series not in series_of:
            series_of[series] = {"series_uid": f"1.2.3.{study}.{series}", "modality": pick.choice(["CT", "MR", "OT"]),
                                 "series_number": str(series % 4), "series_description": ""}
        rows.append({
            **patients[patient], **studies[study], **series_of[series],
            "sop_uid": f"1.2.3.{study}.{series}.{number}", "sop_class": SECONDARY_CAPTURE,
            "instance_number": str(number % 5), "transfer_syntax": "1.2.840.10008.1.2.1", "path": f"x/{number}.dcm",
        })
    return rows


def _index(path: Path, rows: list[dict[str, str]]) -> Index:
    index = Index(str(path))
    index._db.execute("BEGIN")
    index._db.executemany(_INSERT, [[row.get(column, "") for column in COLUMNS] for row in rows])
    index._db.execute("COMMIT")
    return index


def _identifier(level: str, **keys: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    return identifier


def test_a_page_of_answers_reads_a_page_of_rows(tmp_path, monkeypatch):
    index = _index(tmp_path / "index.sqlite", _rows(20_000))
    calls = collections.Counter()

    def counted(vr, key, value):
        calls["matched"] += 1
        return matches(vr, key, value)

    built = collections.Counter()
    answer = index_module._answer

    def counted_answer(*args):
        built["answers"] += 1
        return answer(*args)

    monkeypatch.setattr(index_module, "matches", counted)
    monkeypatch.setattr(index_module, "_answer", counted_answer)
    for level in ("IMAGE", "SERIES", "STUDY"):
        calls.clear()
        identifier = _identifier(level, SOPInstanceUID="", Modality="", StudyDate="")
        (first,) = itertools.islice(index.query(identifier, level), 1)
        assert first.row
        # one answer's row, each of its keys matched (well under the bound: rows of other answers are not read)
        assert calls["matched"] <= 3 * 12, (level, calls)
    built.clear()
    page = list(itertools.islice(index.query(_identifier("STUDY", StudyInstanceUID=""), "STUDY"), 1500, 1510))
    assert len(page) == 10 and built["answers"] == 0  # the 1,500 answers skipped were never built
    assert [match.identifier.StudyInstanceUID for match in page] and built["answers"] == 10
    index.close()


KEYS = {
    "PatientID": ["", "P001", "P00*", "P001\\P002", "p001", "*"],
    "PatientName": ["", "DOE^*", "doe^john", "D?E^JANE", "ROE^R", "*ss*", "STRASSE*", "m*", "*\tname", "*%*",
                    "d_e*", "STRASSE^ANNA", "doe^j?hn", "DOE^JOHN", "Do", "müller*"],
    "StudyInstanceUID": ["", "1.2.3.5", "1.2.3.5\\1.2.3.17\\1.2.3.99", "1.2.3.*"],
    "SeriesInstanceUID": ["", "1.2.3.5.11", "1.2.3.5.10\\1.2.3.5.11"],
    "StudyDate": ["", "20200301-20200630", "-20200201", "20201201-", "20200115", "20200115-20200115", "-"],
    "StudyTime": ["", "0800-1300", "1200"],
    "AccessionNumber": ["", "A3", "A*", "A1\\A2", "a*", "?3", "A_"],
    "StudyDescription": ["", "CHEST", "*CT*", "chest"],
    "Modality": ["", "CT", "MR\\OT", "C?"],
    "ModalitiesInStudy": ["", "CT", "MR\\CT"],
    "SeriesNumber": ["", "2", "1\\3"],
    "SOPInstanceUID": ["", "1.2.3.4.9.45", "1.2.3.4.9.45\\1.2.3.4.9.46"],
    "InstanceNumber": ["", "4"],
}


def test_what_sql_selects_never_leaves_out_a_row_the_matching_rules_accept(tmp_path):
    """Random queries at every level: the streamed answers equal a brute force of the matching rules over
    every row (grouped by the level's unique key), answer for answer and row for row."""
    rows = _rows(600, seed=11)
    index = _index(tmp_path / "index.sqlite", rows)
    pick = random.Random(3)
    for _ in range(1500):
        level = pick.choice(LEVELS)
        chosen = {keyword: pick.choice(values) for keyword, values in pick.sample(sorted(KEYS.items()), 3)}
        identifier = _identifier(level, **chosen)
        got = {match.row[ATTRIBUTES[UNIQUE[level]][0]]: sorted(row["sop_uid"] for row in match.instances())
               for match in index.query(identifier, level)}
        assert got == _brute_force(rows, level, chosen), (level, chosen)
    index.close()


def _brute_force(rows, level: str, keys: dict[str, str]) -> dict[str, list[str]]:
    depth = LEVELS.index(level)
    groups: dict[str, list[dict]] = {}
    for row in rows:
        if all(matches(ATTRIBUTES[keyword][2], value, row[ATTRIBUTES[keyword][0]])
               for keyword, value in keys.items()
               if keyword in ATTRIBUTES and LEVELS.index(ATTRIBUTES[keyword][1]) <= depth):
            groups.setdefault(row[ATTRIBUTES[UNIQUE[level]][0]], []).append(row)
    if "ModalitiesInStudy" in keys and depth == 1:  # a study's key: matched at the study level only
        groups = {key: group for key, group in groups.items()
                  if any(matches("CS", keys["ModalitiesInStudy"], row["modality"]) for row in group)}
    return {key: sorted(row["sop_uid"] for row in group) for key, group in groups.items()}


def test_qido_pages_make_the_whole_answer_which_is_streamed(tmp_path):
    with Server(tmp_path) as server:
        server.pacs.index.close()
        server.pacs.index = _index(Path(server.pacs.storage) / "index.sqlite", _rows(3_000))
        status, headers, body = server.request("GET", "/instances?includefield=00080018")
        assert status == 200 and headers.get("Transfer-Encoding") == "chunked"
        whole = [answer["00080018"]["Value"][0] for answer in json.loads(body)]
        assert len(whole) == len(set(whole)) == 3_000
        paged = []
        for offset in range(0, 3_100, 700):
            status, _, body = server.request("GET", f"/instances?limit=700&offset={offset}")
            paged += [answer["00080018"]["Value"][0] for answer in json.loads(body)] if status == 200 else []
        assert paged == whole
        assert server.request("GET", "/instances?offset=3000")[0] == 204


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _big_instance(path: Path, mebibytes: int) -> Path:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SECONDARY_CAPTURE, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.PatientID, ds.Modality = generate_uid(), generate_uid(), "BIG", "OT"
    ds.Rows, ds.Columns = mebibytes * 256, 2048
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = (bytes(range(256)) * (mebibytes * 4096))  # mebibytes MiB
    ds.save_as(path, enforce_file_format=True)
    return path


def _post_file(port: int, path: Path, cut_after: int | None = None) -> tuple[int, bytes] | None:
    """STOW-RS `path` as one part, sent from disk; with `cut_after` the connection is closed that many bytes
    into the part (None returned)."""
    head = b"--XX\r\nContent-Type: application/dicom\r\n\r\n"
    tail = b"\r\n--XX--\r\n"
    size = path.stat().st_size
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    connection.putrequest("POST", "/dicom-web/studies")
    connection.putheader("Content-Type", 'multipart/related; type="application/dicom"; boundary=XX')
    connection.putheader("Content-Length", str(len(head) + size + len(tail)))
    connection.endheaders()
    connection.send(head)
    sent = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            if cut_after is not None and sent + len(block) > cut_after:
                connection.close()
                return None
            connection.send(block)
            sent += len(block)
    connection.send(tail)
    response = connection.getresponse()
    return response.status, response.read()


def test_a_200_mib_stow_part_is_kept_without_being_held_and_a_cut_one_leaves_nothing(tmp_path):
    import pydicom

    sent = _big_instance(tmp_path / "big.dcm", 200)
    port, http_port, storage = free_port(), free_port(), tmp_path / "storage"
    serve = subprocess.Popen([sys.executable, "-m", "dicomscu", "serve", "--port", str(port), "--http",
                              str(http_port), "--storage", str(storage)], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(http_port, serve)
        before = _hwm_mb(serve.pid)
        assert _post_file(http_port, sent, cut_after=120 << 20) is None
        deadline = time.monotonic() + 20
        while any(p.suffix == ".part" for p in storage.rglob("*")):  # the cut part's spill file goes
            assert time.monotonic() < deadline, sorted(storage.rglob("*"))
            time.sleep(0.1)
        status, answer = _post_file(http_port, sent)
        grown = _hwm_mb(serve.pid) - before
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    assert status == 200, answer
    assert grown < 50, f"serve's peak memory grew {grown:.0f} MB for a 200 MiB part"
    kept = [p for p in storage.rglob("*.dcm")]
    assert len(kept) == 1 and not [p for p in storage.rglob("*") if p.suffix == ".part"]
    original, stored = pydicom.dcmread(sent), pydicom.dcmread(kept[0])
    assert stored.SOPInstanceUID == original.SOPInstanceUID and stored.PixelData == original.PixelData


def test_one_client_address_holds_at_most_its_share_of_connections(tmp_path):
    with Server(tmp_path, http_per_client=3) as server:
        held = [socket.create_connection(("127.0.0.1", server.pacs.http_port)) for _ in range(3)]
        time.sleep(0.2)
        status, headers, body = server.request("GET", "/studies")
        assert status == 503 and b"too many connections" in body and headers.get("Retry-After") == "1"
        held.pop().close()
        deadline = time.monotonic() + 5
        while (status := server.request("GET", "/studies")[0]) == 503:  # a slot freed is a slot again
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert status == 204
        for connection in held:
            connection.close()


def test_a_trickled_body_is_cut_off(tmp_path, monkeypatch):
    from dicomscu.server import web

    monkeypatch.setattr(web, "BODY_GRACE_SECONDS", 1.0)
    monkeypatch.setattr(web, "BODY_BYTES_PER_SECOND", 100_000)
    with Server(tmp_path) as server:
        connection = socket.create_connection(("127.0.0.1", server.pacs.http_port), timeout=10)
        connection.sendall(b"POST /dicom-web/studies HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                           b"Content-Type: multipart/related; type=\"application/dicom\"; boundary=XX\r\n\r\n")
        started = time.monotonic()
        answer = b""
        try:
            while time.monotonic() - started < 8 and not answer:
                connection.sendall(b"-")
                connection.settimeout(0.2)
                try:
                    answer = connection.recv(4096)
                except TimeoutError:
                    pass
            connection.settimeout(5)
            while part := connection.recv(4096):  # the rest of the answer, then the server closes
                answer += part
        finally:
            connection.close()
        assert answer.startswith(b"HTTP/1.1 408") and b"too slowly" in answer


def test_a_rejected_requestor_is_left_to_close_first(tmp_path):
    """After A-ASSOCIATE-RJ the acceptor waits (ARTIM) for the requestor to close instead of closing at
    once (PS3.8 9.2, Sta13), so that the rejection is never lost to a reset."""
    from dicomscu.protocol import pdu as pdus

    with Server(tmp_path, require_calling=["ONLY"], http_port=None) as server:
        request = pdus.encode(pdus.AssociateRQ(
            "DICOMSCU", "STRANGER", (pdus.ProposedContext(1, "1.2.840.10008.1.1", ("1.2.840.10008.1.2",)),),
            pdus.UserInformation(max_length=16384, implementation_class="1.2.3")))
        connection = socket.create_connection(("127.0.0.1", server.pacs.port), timeout=5)
        connection.sendall(request)
        assert connection.recv(10)[:1] == b"\x03"  # A-ASSOCIATE-RJ
        connection.settimeout(0.5)
        with pytest.raises(TimeoutError):  # the acceptor keeps the connection open for us to close
            connection.recv(10)
        connection.close()


def _echo_held(port: int, start, answers) -> None:
    import dicomscu

    start.wait()
    try:
        with dicomscu.Association(dicomscu.Peer("127.0.0.1", port)) as association:
            association.echo()
            time.sleep(0.5)
        answers.put("accepted")
    except dicomscu.AssociationRejected as exc:
        answers.put("rejected (transient)" if "transient" in str(exc) else f"rejected: {exc}")
    except Exception as exc:
        answers.put(f"{type(exc).__name__}: {exc}")


def test_three_hundred_clients_against_32_associations_each_read_accept_or_rejection(tmp_path):
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "dicomscu", "serve", "--port", str(port), "--storage",
                              str(tmp_path / "storage"), "--max-associations", "32"], stderr=subprocess.DEVNULL)
    context = multiprocessing.get_context("fork")
    start, answers = context.Event(), context.Queue()
    try:
        wait_for_port(port, serve)
        import dicomscu.operations.session  # noqa: F401  (loaded once, before forking)

        clients = [context.Process(target=_echo_held, args=(port, start, answers)) for _ in range(300)]
        for client in clients:
            client.start()
        start.set()
        outcomes = collections.Counter(answers.get(timeout=120) for _ in clients)
        for client in clients:
            client.join(timeout=30)
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    assert set(outcomes) <= {"accepted", "rejected (transient)"}, outcomes
    assert outcomes["rejected (transient)"] > 0 and outcomes["accepted"] >= 32, outcomes


def test_a_patient_name_or_its_prefix_is_read_by_an_index(tmp_path):
    """A name query (exact, or a prefix before its first wildcard) reads through the folded-name index the
    names it can match and those SQL cannot fold: it does not scan the archive."""
    from dicomscu.server.index import _prefilter

    index = _index(tmp_path / "index.sqlite", _rows(50))
    for key in ("DOE^42*", "doe^john", "D?E^*"):
        for table, unique in (("studies", "study_uid"), ("patients", "patient_id")):  # study and patient queries
            clause, parameters = _prefilter(f"{table}.patient_name", "PN", key)
            plan = str(index._db.execute(f"EXPLAIN QUERY PLAN SELECT {unique} FROM {table} WHERE {clause}",
                                         parameters).fetchall())
            assert f"{table}_by_name_fold" in plan, (key, plan)
    assert _prefilter("studies.patient_name", "PN", "*42") is not None  # no prefix: LIKE narrows, the scan stays
    index.close()


def test_an_index_or_trigger_dropped_or_changed_is_made_again_when_the_index_is_opened(tmp_path):
    """Indexes come back when dropped; triggers are made again at each opening (an index keeps the bodies of
    the version that opened it last: here one that would count each instance twice)."""
    import sqlite3

    path = tmp_path / "index.sqlite"
    _index(path, _rows(20)).close()
    db = sqlite3.connect(path)
    db.execute("DROP INDEX studies_by_name_fold")  # (by hand, or by a tool)
    db.execute("DROP TRIGGER instance_added")
    db.execute("CREATE TRIGGER instance_added AFTER INSERT ON instances BEGIN "
               "UPDATE studies SET study_instances = study_instances + 2 WHERE study_uid = NEW.study_uid; END")
    db.commit()
    db.close()
    index = Index(str(path))
    names = {row[0] for row in index._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "studies_by_name_fold" in names and index.count() == 20
    index.add(dict(_rows(20)[0], sop_uid="1.2.3.0.0.99", path="x/99.dcm"))
    assert index.count() == 21
    index.close()


#: The index as version 1 made it (one table of instances, its indexes on it; user_version 0), kept here as
#: it was, without the columns added since (read as empty until --reindex).
VERSION_1 = """
CREATE TABLE instances (patient_id TEXT, patient_name TEXT, patient_birth_date TEXT, patient_sex TEXT,
    study_uid TEXT, study_date TEXT, study_time TEXT, accession_number TEXT, study_id TEXT, study_description TEXT,
    referring_physician TEXT, series_uid TEXT, modality TEXT, series_number TEXT, series_description TEXT,
    sop_uid TEXT PRIMARY KEY, sop_class TEXT, instance_number TEXT, transfer_syntax TEXT, path TEXT);
CREATE INDEX by_patient ON instances (patient_id);
CREATE INDEX by_study ON instances (study_uid);
CREATE INDEX by_series ON instances (series_uid);
CREATE INDEX by_accession ON instances (accession_number);
CREATE INDEX by_study_date ON instances (study_date);
CREATE INDEX by_patient_name_fold ON instances ((CASE WHEN patient_name GLOB '*[^ -~]*' THEN '' ELSE upper(patient_name) END));
"""


def test_an_index_of_the_previous_version_is_upgraded_in_place(tmp_path):
    """A version-1 index opens: its study and series rows are built with their counts, the columns added since
    read empty, the indexes that moved to the study table are gone, and stores after it keep counts."""
    import sqlite3

    from dicomscu.server.schema import VERSION

    path = tmp_path / "index.sqlite"
    rows = _rows(200)
    old = [c for c in COLUMNS if c not in ("rows", "columns", "bits_allocated", "number_of_frames")]
    db = sqlite3.connect(path)
    db.executescript(VERSION_1)
    db.executemany(f"INSERT INTO instances ({', '.join(old)}) VALUES ({', '.join('?' for _ in old)})",
                   [[row[c] for c in old] for row in rows])
    db.commit()
    db.close()
    index = Index(str(path))
    try:
        assert index._db.execute("PRAGMA user_version").fetchone()[0] == VERSION
        names = {row[0] for row in index._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "studies_by_name_fold" in names and "by_patient_name_fold" not in names and index.count() == 200
        study = _identifier("STUDY", StudyInstanceUID="1.2.3.4", NumberOfStudyRelatedInstances="",
                            NumberOfStudyRelatedSeries="", ModalitiesInStudy="", PatientName="")
        (match,) = index.query(study, "STUDY")
        modalities = sorted({row["modality"] for row in rows if row["study_uid"] == "1.2.3.4"})
        assert (match.identifier.NumberOfStudyRelatedInstances, match.identifier.NumberOfStudyRelatedSeries) == (10, 2)
        assert _values(match.identifier.ModalitiesInStudy) == modalities and len(match.instances()) == 10
        added = dict(rows[40], sop_uid="1.2.3.4.9.999", path="x/new.dcm", modality="US", series_uid="1.2.3.4.99")
        index.add(added)
        (match,) = index.query(study, "STUDY")
        assert (match.identifier.NumberOfStudyRelatedInstances, match.identifier.NumberOfStudyRelatedSeries) == (11, 3)
        assert _values(match.identifier.ModalitiesInStudy) == sorted({*modalities, "US"})
        (image,) = index.query(_identifier("IMAGE", SOPInstanceUID="1.2.3.4.9.45", Rows=""), "IMAGE")
        assert "Rows" in image.identifier and image.identifier.Rows is None  # added since version 1: empty
    finally:
        index.close()
    reopened = Index(str(path))  # opening the upgraded index again changes nothing
    assert reopened.count() == 201 and len(list(reopened.query(_identifier("STUDY", StudyInstanceUID=""), "STUDY"))) == 20
    reopened.close()


def _values(value) -> list[str]:
    """A multi-valued element's values (pydicom gives one value as itself)."""
    return [value] if isinstance(value, str) else sorted(value)


def test_an_index_of_version_2_gets_its_patients_table(tmp_path):
    """Version 2 had studies and series but no patients: opening it builds the patients' rows and counts."""
    import sqlite3

    path = tmp_path / "index.sqlite"
    _index(path, _rows(200)).close()
    db = sqlite3.connect(path)
    for trigger in ("study_added", "study_changed", "study_removed", "instance_added", "instance_removed"):
        db.execute(f"DROP TRIGGER {trigger}")
    db.execute("DROP TABLE patients")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    index = Index(str(path))
    try:
        patient = _identifier("PATIENT", PatientID="P001", NumberOfPatientRelatedStudies="",
                              NumberOfPatientRelatedSeries="", NumberOfPatientRelatedInstances="")
        (match,) = index.query(patient, "PATIENT")
        answer = match.identifier
        assert (answer.NumberOfPatientRelatedStudies, answer.NumberOfPatientRelatedSeries,
                answer.NumberOfPatientRelatedInstances) == (5, 10, 50)
        assert len(match.instances()) == 50
        index.add(dict(_rows(200)[60], sop_uid="1.2.3.6.99.999", series_uid="1.2.3.6.99", path="x/new.dcm"))
        (match,) = index.query(patient, "PATIENT")
        assert (match.identifier.NumberOfPatientRelatedSeries, match.identifier.NumberOfPatientRelatedInstances) == (11, 51)
    finally:
        index.close()


def test_a_c_find_is_streamed_from_the_cursor_and_a_cancel_stops_the_query(tmp_path, monkeypatch):
    """Over 20,000 instances a C-FIND that the client cancels after 5 answers reads about 5 rows: its answers
    are made as the cursor reads them (not all gathered first), and the C-CANCEL closes the cursor."""
    import dicomscu

    made = collections.Counter()
    match_init = index_module.Match.__init__

    def counted(self, *args, **kwargs):
        made["matches"] += 1
        match_init(self, *args, **kwargs)

    monkeypatch.setattr(index_module.Match, "__init__", counted)
    with dicomscu.serve(tmp_path / "storage") as served:
        served.pacs.index.close()
        served.pacs.index = _index(Path(served.pacs.storage) / "index.sqlite", _rows(20_000))
        query = dicomscu.build_query("studyroot", "image", ["SOPInstanceUID", "StudyInstanceUID=",
                                                             "SeriesInstanceUID="])
        answers: list = []
        report = dicomscu.find(served.peer, query, dicomscu.FindOptions(limit=5), on_answer=answers.append)
        assert len(answers) == 5 and report.cancelled and not report.cancel_ignored
        assert made["matches"] < 100, made  # (before: all 20,000 gathered, whatever the client took)
        made.clear()
        report = dicomscu.find(served.peer, dicomscu.build_query("studyroot", "study", ["StudyInstanceUID"]))
        assert report.ok and made["matches"] == 2_000  # a whole answer: every study, one row each
