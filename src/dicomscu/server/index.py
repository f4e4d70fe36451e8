"""The embedded PACS's index: SQLite (WAL mode), a table per level of the query model (:mod:`.schema`).

Each instance's row holds its patient, study, series and instance attributes (as decoded text) and its file
path; triggers keep one row per patient, study and series, with their counts, in step.  A query reads the
rows of its level's table (one per patient or study; a series' or an instance's joined to its study's),
with the keys SQL can narrow pushed into the WHERE clause, in the order of the level's unique key on an
index; it matches every key in Python (:mod:`.matching`, whose verdict decides) and yields each answer as
soon as its row is read: taking ten answers reads about ten rows, whatever the archive's size.  Writes are
serialized by a lock; queries read on connections of their own (WAL snapshots).  The index survives
restarts, is upgraded in place from an earlier version, and can be rebuilt from the files (``reindex``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
import typing
from dataclasses import dataclass, field
from typing import Iterator

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomscu.files.instances import discard
from dicomscu.files.probe import BadFile, probe, probe_head
from dicomscu.server import schema
from dicomscu.server.matching import RANGE_VRS, WILDCARD_VRS, key_text, matches
from dicomscu.server.stored_keys import all_match, read_stored, returned, stored_keys

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
          "IMAGE": "SOPInstanceUID"}

#: keyword -> (column, level where the attribute lives, VR)
ATTRIBUTES = {
    "PatientID": ("patient_id", "PATIENT", "LO"),
    "PatientName": ("patient_name", "PATIENT", "PN"),
    "PatientBirthDate": ("patient_birth_date", "PATIENT", "DA"),
    "PatientSex": ("patient_sex", "PATIENT", "CS"),
    "StudyInstanceUID": ("study_uid", "STUDY", "UI"),
    "StudyDate": ("study_date", "STUDY", "DA"),
    "StudyTime": ("study_time", "STUDY", "TM"),
    "AccessionNumber": ("accession_number", "STUDY", "SH"),
    "StudyID": ("study_id", "STUDY", "SH"),
    "StudyDescription": ("study_description", "STUDY", "LO"),
    "ReferringPhysicianName": ("referring_physician", "STUDY", "PN"),
    "SeriesInstanceUID": ("series_uid", "SERIES", "UI"),
    "Modality": ("modality", "SERIES", "CS"),
    "SeriesNumber": ("series_number", "SERIES", "IS"),
    "SeriesDescription": ("series_description", "SERIES", "LO"),
    "SOPInstanceUID": ("sop_uid", "IMAGE", "UI"),
    "SOPClassUID": ("sop_class", "IMAGE", "UI"),
    "InstanceNumber": ("instance_number", "IMAGE", "IS"),
    # what a viewer's instance search needs (PS3.18 Table 10.6.3-5), read as numbers from their binary values
    "Rows": ("rows", "IMAGE", "US"),
    "Columns": ("columns", "IMAGE", "US"),
    "BitsAllocated": ("bits_allocated", "IMAGE", "US"),
    "NumberOfFrames": ("number_of_frames", "IMAGE", "IS"),
    # not an attribute of the data set: the syntax the instance is stored in (PS3.18's
    # AvailableTransferSyntaxUID), so a C-GET client can propose exactly the contexts it needs
    "AvailableTransferSyntaxUID": ("transfer_syntax", "IMAGE", "UI"),
}
#: Keys answered from how an instance is stored rather than read from its data set.
STORED_AS = {"AvailableTransferSyntaxUID"}
#: Study-level keys computed over a study's instances (PS3.4 C.6.2.1.2), matched when any of the study's
#: values matches: keyword -> (column of the studies table: values separated by commas, VR).
AGGREGATED = {"ModalitiesInStudy": ("modalities", "CS"), "SOPClassesInStudy": ("sop_classes", "UI")}
#: A query that runs longer than this is stopped (its C-FIND answered "out of resources").
QUERY_SECONDS = 30.0
#: The name (after the index's own) under which ``--reindex`` builds the new index before swapping it in.
REBUILD_SUFFIX = ".rebuild"
#: A key with more values than this is matched in Python only (SQLite bounds the parameters of a statement).
_MOST_SQL_VALUES = 500
_CHARSET = 0x00080005
_TEXT = {"PN", "LO", "SH"}  # VRs whose text may use the Specific Character Set
COLUMNS = list(dict.fromkeys([column for column, _, _ in ATTRIBUTES.values()] + ["transfer_syntax", "path"]))

#: The instances indexed, from the studies' counts (a row per study read, not one per instance).
_COUNT = "SELECT COALESCE(SUM(study_instances), 0) FROM studies"
_INSERT = f"INSERT OR REPLACE INTO instances ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


class Match:
    """One answer of a query: the row of its level it stands for (a patient's, a study's, a series' joined to
    its study's, an instance's joined to both), and the identifier to return, built from it only when asked
    for (a page of answers costs its page, an offset skips for free)."""

    def __init__(self, request: Dataset, level: str, row: dict[str, str], stored: Dataset | None,
                 index: "Index") -> None:
        self._request = request
        self._index = index
        self.level = level
        self.row = row
        #: The keys the index does not hold, read from the stored instance that stands for this answer.
        self.stored = stored

    @functools.cached_property
    def identifier(self) -> Dataset:
        return _answer(self._request, self.level, self.row, self.stored)

    def instances(self, columns: typing.Sequence[str] = COLUMNS) -> list[dict[str, str]]:
        """`columns` of the instances rows of every instance under this answer (what a retrieval of it sends;
        a retrieval of many instances asks for the few columns it needs)."""
        if self.level == "IMAGE":
            return [self.row]
        key = {"SERIES": "series_uid", "STUDY": "study_uid", "PATIENT": "patient_id"}[self.level]
        return self._index.instance_rows(key, [self.row[key]], columns)

    @property
    def paths(self) -> list[str]:
        return [row["path"] for row in self.instances(["path"])]


def index_row(raw: bytes | bytearray | memoryview, transfer_syntax: str) -> dict[str, str]:
    """The index row of an encoded data set, read from its bytes (no pydicom decoding).

    Raises :class:`~dicomscu.files.probe.BadFile` when the data set is not whole.
    Text is decoded with the data set's own Specific Character Set.
    """
    from pydicom.charset import decode_bytes

    from dicomscu.files.probe import top_level_bytes

    tags = _indexed_tags()
    found = top_level_bytes(raw, transfer_syntax, [*tags, _CHARSET])
    encodings = _encodings(bytes(found.pop(_CHARSET)))
    row = {"path": "", "transfer_syntax": str(transfer_syntax)}
    for tag, keyword in tags.items():
        column, _, vr = ATTRIBUTES[keyword]
        value = found[tag]
        if vr == "US":  # binary: the first value, in the data set's byte order
            number = int.from_bytes(bytes(value[:2]), "big" if transfer_syntax == "1.2.840.10008.1.2.2" else "little")
            row[column] = str(number) if len(value) >= 2 else ""
            continue
        if vr not in _TEXT or (value.isascii() and b"\x1b" not in value):
            text = value.decode("ascii", "replace")  # most values: no character set at play
        else:
            delimiters = {0x5E, 0x3D} if vr == "PN" else set()  # "^" and "=" reset the encoding in a PN
            text = decode_bytes(value, encodings, delimiters)
        row[column] = text.strip("\0").strip()  # as matching strips a value
    return row


@functools.lru_cache(maxsize=64)
def _encodings(charset: bytes) -> list[str]:
    """Python codecs for a Specific Character Set value (a store's are few: computed once each)."""
    from pydicom.charset import convert_encodings

    terms = charset.decode("ascii", "replace").strip("\0 ").split("\\")
    return convert_encodings([t.strip() for t in terms if t.strip()] or ["ISO_IR 6"])


@functools.lru_cache(maxsize=1)
def _indexed_tags() -> dict[int, str]:
    """tag -> keyword of the attributes read from each stored data set (computed once)."""
    return {_tag(keyword): keyword for keyword in ATTRIBUTES if keyword not in STORED_AS}


def _tag(keyword: str) -> int:
    tag = tag_for_keyword(keyword)
    if tag is None:  # pragma: no cover - ATTRIBUTES holds dictionary keywords only
        raise KeyError(keyword)
    return tag


@dataclass
class Reindexed:
    """What ``--reindex`` (or the adoption at start) did: instances indexed, duplicate files removed, files it
    could not read."""

    indexed: int = 0
    dropped: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _instance_files(storage: str) -> Iterator[str]:
    for folder, names in _instance_folders(storage):
        for name in names:
            yield os.path.join(folder, name)


def _instance_folders(storage: str) -> Iterator[tuple[str, list[str]]]:
    """(folder, its ``.dcm`` file names, sorted) for each folder under `storage` that holds any: one folder's
    names in memory at a time."""
    for folder, _, names in os.walk(storage):
        files = sorted(name for name in names if name.endswith(".dcm"))
        if files:
            yield folder, files


def _row_of_file(path: str) -> dict[str, str]:
    """The index row of a stored file, from its bytes (the same reading as a C-STORE's)."""
    with open(path, "rb") as handle:
        data = handle.read()
    info = probe(data)
    return index_row(memoryview(data)[info.dataset_offset:], info.transfer_syntax)


def _read_stored(path: str, storage: str, result: Reindexed) -> tuple[dict[str, str], float] | None:
    """(index row with its path relative to `storage`, modification time) of a stored file; None when it cannot
    be read, which is counted in `result` (the file is left in place)."""
    try:
        row = _row_of_file(path)
        modified = os.stat(path).st_mtime
    except (OSError, BadFile) as exc:
        result.unreadable.append(f"{path}: {exc}")
        return None
    row["path"] = os.path.relpath(path, storage)
    return row, modified


def _sop_uid_of(path: str) -> str | None:
    """The SOP Instance UID a stored file holds, from its head; None when it cannot be read."""
    try:
        return probe_head(path).sop_instance or None
    except (OSError, BadFile):
        return None


def _same_file(one: str, other: str) -> bool:
    """Whether two paths name one file (an index path joined to the storage may be absolute: older indexes)."""
    return os.path.normpath(one) == os.path.normpath(other)


def _modified(path: str) -> float:
    """A file's modification time; -inf when it is gone (an index row pointing at nothing loses to any file)."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return float("-inf")


def fsync(path: str) -> None:
    """Make `path` (a file or a folder: a rename in it) durable."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@dataclass
class _Batch:
    """Rows staged for one transaction, and whether (and how) it was written."""

    rows: list[dict[str, str]] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    error: sqlite3.Error | None = None


class QueryTooLong(Exception):
    """A query ran past its deadline (:data:`QUERY_SECONDS`)."""


class Index:
    """Thread-safe access to the SQLite index at `path`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        # group commit: rows staged by the associations storing at once, written in one transaction
        self._stage_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._staged = _Batch()
        self._pending: dict[str, tuple[str, _Batch]] = {}  # sop_uid -> (path, batch) of a row staged, not written
        #: Transactions that wrote stored instances' rows (fewer than the rows when associations store at once).
        self.transactions = 0
        discard(path + REBUILD_SUFFIX)  # a --reindex killed before its swap: the index in place is whole
        self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = schema.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        schema.prepare(db, COLUMNS)
        return db

    def close(self) -> None:
        """Close once every row staged is written: a store between its file's rename and its row (group
        commit) completes first, as its caller (serve's stop) expects."""
        with self._stage_lock:
            staged = self._staged
        if staged.rows:
            try:
                self.commit(staged)
            except sqlite3.Error:
                pass  # (each of its writers reports it and removes its file)
        with self._commit_lock, self._lock:
            self._db.close()

    def add(self, row: dict[str, str]) -> None:
        """Write one row now (its own transaction, or that of the rows staged with it)."""
        self.commit(self.stage(row))

    def stage(self, row: dict[str, str]) -> "_Batch":
        """Put `row` in the next transaction; :meth:`commit` of the batch returned writes it.  Until then
        :meth:`path_of` answers from it, so that a writer holding its own lock (serve's) sees what another
        staged: the order of staging is the order of writing."""
        with self._stage_lock:
            batch = self._staged
            batch.rows.append(row)
            self._pending[row["sop_uid"]] = (row.get("path", ""), batch)
            return batch

    def commit(self, batch: "_Batch") -> None:
        """Return once `batch`'s rows are written (raise what writing them raised: none of them is).

        Group commit: the first caller to get here writes every row staged so far, in one transaction, while
        the others wait; rows staged meanwhile go in the next one, written by the first of their callers.  A
        lone writer's row is written at once; associations storing at once share transactions (the cost of a
        commit is mostly its index pages, paid once for the batch).  Nobody returns before its row is in."""
        with self._commit_lock:
            if not batch.done.is_set():
                with self._stage_lock:  # the batch waiting is the one staged: what is staged from now on waits
                    rows, self._staged = batch.rows, _Batch()
                try:
                    self.write_rows(rows)
                    self.transactions += 1
                except sqlite3.Error as exc:
                    batch.error = exc
                finally:
                    with self._stage_lock:
                        for row in rows:
                            if self._pending.get(row["sop_uid"], (None, None))[1] is batch:
                                del self._pending[row["sop_uid"]]
                    batch.done.set()
        if batch.error is not None:
            raise batch.error

    def write_rows(self, rows: list[dict[str, str]]) -> None:
        """`rows` in one transaction (all, or none on an error)."""
        with self._lock:
            if len(rows) == 1:  # (a lone writer's: SQLite's own transaction, two statements fewer)
                self._db.execute(_INSERT, [rows[0].get(c, "") for c in COLUMNS])
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(_INSERT, [[row.get(c, "") for c in COLUMNS] for row in rows])
                self._db.execute("COMMIT")
            except sqlite3.Error:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def path_of(self, sop_uid: str) -> str | None:
        with self._stage_lock:
            staged = self._pending.get(sop_uid)
        if staged is not None:
            return staged[0]
        with self._lock:
            found = self._db.execute("SELECT path FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone()
        return found[0] if found else None

    def written_path_of(self, sop_uid: str) -> str | None:
        """:meth:`path_of` once a row staged for `sop_uid` is written (or failed to be: then the row before it,
        if any), for a decision that must not rest on a row that may yet fail (--no-overwrite's)."""
        with self._stage_lock:
            staged = self._pending.get(sop_uid)
        if staged is not None:
            try:
                self.commit(staged[1])
            except sqlite3.Error:
                pass  # (its writer reports it)
        return self.path_of(sop_uid)

    def stored_as(self, sop_uid: str) -> tuple[str, str] | None:
        """(index path, SOP Class UID) of an indexed instance, or None."""
        with self._lock:
            found = self._db.execute("SELECT path, sop_class FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone()
        return (found[0], found[1]) if found else None

    def make_durable(self) -> None:
        """Every row written so far survives a power cut: what a storage commitment promises, where a C-STORE's
        row (WAL, synchronous=NORMAL) is safe from a crash of serve only.  The write-ahead log holds every
        committed transaction, so syncing it (and the database file, for what a checkpoint moved there) is
        enough; no lock is taken and no checkpoint waited for, so a long query elsewhere delays nothing."""
        for path in (self.path + "-wal", self.path):
            try:
                fsync(path)
            except FileNotFoundError:
                pass  # no log yet (or checkpointed away): the database file holds it all

    def contains(self, sop_uid: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM instances WHERE sop_uid = ?", (sop_uid,)).fetchone() is not None

    def count(self) -> int:
        """The instances indexed (from the studies' counts: a row per study read, not one per instance)."""
        with self._lock:
            return self._db.execute(_COUNT).fetchone()[0]

    def rows(self, where: dict[str, str] | None = None) -> list[dict[str, str]]:
        """Rows whose columns equal `where` (exact SQL prefilter)."""
        clauses = " AND ".join(f"{column} = ?" for column in (where or {}))
        sql = f"SELECT {', '.join(COLUMNS)} FROM instances" + (f" WHERE {clauses}" if clauses else "")
        with self._lock:
            cursor = self._db.execute(sql, list((where or {}).values()))
            return [dict(zip(COLUMNS, values)) for values in cursor.fetchall()]

    def reindex(self, storage: str) -> Reindexed:
        """Rebuild from the files under `storage`, reconciling what disagrees, crash-safe.

        The new index is built aside (``index.sqlite.rebuild``) and swapped in by one rename once it is
        complete and on disk: a kill at any moment leaves the old index or the new one, never half of one.
        Unreadable files are left in place and counted; of several files holding the same SOP Instance (an
        instance re-sent under another study before this index kept them in step), the newest is indexed and
        the others are removed, after the swap (the old index may still point at them until then), and
        named in the result.
        """
        result = Reindexed()
        rebuilt = self.path + REBUILD_SUFFIX
        discard(rebuilt)
        fresh = schema.connect(rebuilt)
        try:
            fresh.execute("PRAGMA journal_mode=DELETE")
            fresh.execute("PRAGMA synchronous=OFF")  # durability comes from the fsync before the swap
            schema.prepare(fresh, COLUMNS)
            fresh.execute("BEGIN")
            for path in _instance_files(storage):
                found = _read_stored(path, storage, result)
                if found is None:
                    continue
                row, modified = found
                # a file of an instance already met: the new index itself says where (memory stays flat in the
                # number of files); the newer file is kept
                earlier = fresh.execute("SELECT path FROM instances WHERE sop_uid = ?", (row["sop_uid"],)).fetchone()
                if earlier is not None:
                    earlier_path = os.path.join(storage, earlier[0])
                    older = min((_modified(earlier_path), earlier_path), (modified, path))
                    result.dropped.append(older[1])
                    if older[1] == path:
                        continue
                fresh.execute(_INSERT, [row.get(c, "") for c in COLUMNS])
            result.indexed = fresh.execute(_COUNT).fetchone()[0]
            fresh.execute("COMMIT")
        finally:
            fresh.close()
        fsync(rebuilt)
        self._swap_in(rebuilt)
        for path in result.dropped:
            discard(path)
        return result

    def _swap_in(self, rebuilt: str) -> None:
        """Replace the index by the complete file `rebuilt` in one rename.  The old index's write-ahead log is
        folded into it and removed first: a log left beside the new file would be replayed into it."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("PRAGMA journal_mode=DELETE")
            self._db.close()
            os.replace(rebuilt, self.path)
            fsync(os.path.dirname(os.path.abspath(self.path)))
            self._db = self._connect()

    def adopt(self, storage: str) -> Reindexed:
        """Index the complete, valid ``.dcm`` files under `storage` that have no row (a kill between a file's
        rename and its row), so that the index and the files agree again; of two files of one instance the
        newer is kept, as :meth:`reindex` does.  Unreadable files are left in place and counted."""
        result = Reindexed()
        for path in self._unknown_files(storage):
            found = _read_stored(path, storage, result)
            if found is None:
                continue
            row, modified = found
            earlier = self.path_of(row["sop_uid"])
            earlier_path = os.path.join(storage, earlier) if earlier is not None else None
            if earlier_path is not None and _same_file(earlier_path, path):
                continue  # indexed under a name that is not its UID (files indexed by --reindex)
            if earlier_path is not None and _modified(earlier_path) > modified:
                discard(path)  # an older copy of an instance indexed elsewhere
                result.dropped.append(path)
                continue
            self.add(row)
            if earlier_path is not None:
                discard(earlier_path)
                result.dropped.append(earlier_path)
            result.indexed += 1
        return result

    def _unknown_files(self, storage: str) -> Iterator[str]:
        """The ``.dcm`` files under `storage` that no row points at, asked folder by folder: a file is named
        after its SOP Instance UID, so a folder's names are looked up by the instances' key, in chunks (memory
        stays flat in the archive's size; a file named otherwise is looked up by what it holds)."""
        for folder, names in _instance_folders(storage):
            uids = [name[:-4] for name in names]
            indexed = {row["sop_uid"]: row["path"] for row in self.instance_rows("sop_uid", uids, ("sop_uid", "path"))}
            for uid, name in zip(uids, names):
                path = os.path.join(folder, name)
                known = indexed.get(uid)
                if known is None:  # new, or named otherwise (indexed by --reindex): what it holds says
                    held = _sop_uid_of(path)
                    known = self.path_of(held) if held else None
                if known is None or not _same_file(os.path.join(storage, known), path):
                    yield path

    def instance_rows(self, column: str, values: list[str], columns: typing.Sequence[str] = COLUMNS) -> list[dict[str, str]]:
        """`columns` of the instances rows whose `column` (``sop_uid``, ``study_uid`` or ``series_uid``:
        indexed; ``patient_id``: through the studies the patient's row holds) is one of `values`, in the order
        they were stored within each, asked in chunks of :data:`_MOST_SQL_VALUES`."""
        found: list[dict[str, str]] = []
        for start in range(0, len(values), _MOST_SQL_VALUES):
            chunk = values[start:start + _MOST_SQL_VALUES]
            marks = ", ".join("?" for _ in chunk)
            where = (f"study_uid IN (SELECT study_uid FROM studies WHERE patient_id IN ({marks}))"
                     if column == "patient_id" else f"{column} IN ({marks})")
            sql = f"SELECT {', '.join(columns)} FROM instances WHERE {where}"
            with self._lock:
                found.extend(dict(zip(columns, values)) for values in self._db.execute(sql, chunk).fetchall())
        return found

    # -- queries ---------------------------------------------------------------
    def query(self, identifier: Dataset, level: str, seconds: float = QUERY_SECONDS) -> Iterator[Match]:
        """Answers to `identifier` at `level`: one per distinct unique key of that level, in the order of
        that key, each yielded as soon as its row is read.

        The rows are those of the level's table (one per patient or study; a series' and an instance's
        joined to their study's), from SQL in unique-key order on an index, prefiltered on the keys SQL can
        narrow, on a connection of the query's own: a consumer that takes one page of answers reads one page
        of rows (QIDO-RS ``limit``), and a slow consumer holds no lock a store needs.  Raises
        :class:`QueryTooLong` once the query's own work (not the consumer's) passes `seconds`.
        """
        if level not in LEVELS:
            return
        depth = LEVELS.index(level)
        source = _SOURCES[level]
        keys, aggregated, prefilter = _plan(identifier, depth, source.columns)
        extra = stored_keys(identifier, ATTRIBUTES)  # matched and answered from a stored file (stored_keys)
        storage = os.path.dirname(os.path.abspath(self.path))
        sql = (f"SELECT {source.select} FROM {source.tables}"
               + (f" WHERE {' AND '.join(clause for clause, _ in prefilter)}" if prefilter else "")
               + f" ORDER BY {source.columns[ATTRIBUTES[UNIQUE[level]][0]]}")
        budget = _Budget(seconds)
        reader = sqlite3.connect(self.path, check_same_thread=False)
        try:
            reader.execute("PRAGMA query_only=1")
            cursor = reader.execute(sql, [value for _, values in prefilter for value in values])
            for number, values in enumerate(cursor):  # (one row per answer: each level's table is keyed by it)
                if number % 1024 == 0:
                    budget.check()
                row = dict(zip(source.names, values))
                if not all(matches(vr, text, row[column]) for column, vr, text in keys):
                    continue
                # a study matches an aggregated key when any of its values does (multi-valued attribute)
                if not all(any(matches(vr, text, value) for value in _listed(row[column]))
                           for column, vr, text in aggregated):
                    continue
                stored = read_stored(os.path.join(storage, row["path"]), extra) if extra else None
                if not extra or (stored is not None and all_match(extra, stored)) or (
                        stored is None and not any(_has_value(key) for key in extra)):
                    with budget.paused():
                        yield Match(identifier, level, row, stored, self)
        finally:
            reader.close()


@dataclass(frozen=True)
class _Source:
    """What a query at one level reads: its tables, and each column's qualified name there."""

    tables: str
    columns: dict[str, str]  # column -> table.column

    @functools.cached_property
    def names(self) -> list[str]:
        return list(self.columns)

    @functools.cached_property
    def select(self) -> str:
        return ", ".join(self.columns.values())


def _sources() -> dict[str, _Source]:
    """Each level's attributes from that level's table: a patient's from its row, a study's with its
    patient's as the study's row holds them, a series' from its own row joined to its study's, an
    instance's from its own joined to both.  UIDs are read where the table named first holds them, so that a
    UID key narrows on that table's index."""
    patients = _Source("patients", {c: f"patients.{c}" for c in schema.PATIENT_COLUMNS + schema.PATIENT_COUNTS
                                    + ["path"]})
    study = {c: f"studies.{c}" for c in schema.PATIENT_COLUMNS + schema.STUDY_COLUMNS + schema.STUDY_COUNTS}
    studies = _Source("studies", {**study, "path": "studies.path"})
    series = {c: f"series.{c}" for c in schema.SERIES_COLUMNS + schema.SERIES_COUNTS}
    in_series = _Source("series JOIN studies ON studies.study_uid = series.study_uid",
                        {**study, "study_uid": "series.study_uid", **series, "path": "series.path"})
    own = [c for c in COLUMNS if c not in study and c not in series]
    in_instances = _Source("instances JOIN studies ON studies.study_uid = instances.study_uid "
                           "JOIN series ON series.series_uid = instances.series_uid",
                           {**study, **series, "study_uid": "instances.study_uid",
                            "series_uid": "instances.series_uid", **{c: f"instances.{c}" for c in own}})
    return {"PATIENT": patients, "STUDY": studies, "SERIES": in_series, "IMAGE": in_instances}


_SOURCES = _sources()


def _listed(value: str) -> list[str]:
    """The values of a computed multi-valued column (comma-separated; '' when it has none)."""
    return value.split(",") if value else [""]


def _plan(identifier: Dataset, depth: int, columns: dict[str, str]):
    """(keys matched on each row, study-level keys matched over a study's values, SQL prefilter: (clause, its
    parameters) each) of a query at level ``LEVELS[depth]`` reading `columns`.  The prefilter selects a
    superset of the rows the matching rules accept (:func:`_prefilter`); the rules decide."""
    keys = []
    aggregated = []
    prefilter: list[tuple[str, list[str]]] = []
    for element in identifier:
        keyword = element.keyword
        if keyword in AGGREGATED:
            if depth != LEVELS.index("STUDY"):
                continue  # a study's key: not matched at another level (hierarchical model)
            column, vr = AGGREGATED[keyword]
            text = key_text(element.value)
            aggregated.append((column, vr, text))
            # a study with a series of a modality asked for (series_by_modality)
            clause = _prefilter("series.modality", vr, text) if keyword == "ModalitiesInStudy" else None
            if clause is not None:
                prefilter.append((f"studies.study_uid IN (SELECT study_uid FROM series WHERE {clause[0]})",
                                  clause[1]))
            continue
        if keyword not in ATTRIBUTES:
            continue
        column, where, vr = ATTRIBUTES[keyword]
        if LEVELS.index(where) > depth:
            continue  # keys below the query level are not matched (hierarchical model)
        text = key_text(element.value)
        keys.append((column, vr, text))
        clause = _prefilter(columns[column], vr, text)
        if clause is not None:
            prefilter.append(clause)
    return keys, aggregated, prefilter


def _prefilter(column: str, vr: str, key: str) -> tuple[str, list[str]] | None:
    """An SQL condition that every row :func:`~dicomscu.server.matching.matches` accepts for `key` meets (it
    may let through more: the rules decide), or None when SQL cannot narrow it safely.

    Single values and lists: equality (``IN``); a date range (DA): ``BETWEEN``, with the values that hold
    another character than a digit left to the rules; an ASCII wildcard: ``LIKE`` (which ignores ASCII case:
    a superset for the case-sensitive VRs, the rule itself for person names), with the values that hold more
    than printable ASCII left to the rules (a name's case folds beyond ASCII: "ß" is "ss")."""
    key = key.strip() if vr != "PN" else key.rstrip()
    if key in ("", "*"):
        return None
    if vr in RANGE_VRS and "-" in key:
        if vr != "DA":
            return None  # times and date-times compare after padding: the rules only
        low, _, high = (part.strip() for part in key.partition("-"))
        if not all(part.isdigit() or not part for part in (low, high)):
            return None
        return f"({column} BETWEEN ? AND ? OR {column} GLOB '*[^0-9]*')", [low, high or "~"]
    folded = _name_fold(column, key)
    if vr in WILDCARD_VRS and ("*" in key or "?" in key):
        if not key.isascii():
            return None  # LIKE ignores the case of ASCII letters only
        pattern = "".join("%" if c == "*" else "_" if c == "?" else "\\" + c if c in "%_\\" else c for c in key)
        like = f"({column} LIKE ? ESCAPE '\\' OR {column} GLOB '*[^ -~]*')"
        return (f"{folded[0]} AND {like}", [*folded[1], pattern]) if folded else (like, [pattern])
    if vr == "PN":
        return folded  # compared ignoring case, beyond ASCII too: SQL narrows a patient's name only
    values = sorted({part.strip() for part in key.split("\\")}) if vr == "UI" else key.split("\\")
    if len(values) > _MOST_SQL_VALUES:
        return None
    return f"{column} IN ({', '.join('?' for _ in values)})", values


def _name_fold(column: str, key: str) -> tuple[str, list[str]] | None:
    """For a patient's name key of printable ASCII: the indexed condition (:data:`.schema.NAME_FOLD`) its
    matches meet, by the literal text before its first wildcard (all of it, when it has none); else None.
    `column` is qualified by its table (``studies.patient_name``), whose index on the expression is used."""
    table, _, name = column.rpartition(".")
    if name != "patient_name" or not key.isascii() or not key.isprintable() or "\\" in key:
        return None
    fold = schema.name_fold(table)
    cut = min((key.index(c) for c in "*?" if c in key), default=None)
    prefix = (key if cut is None else key[:cut]).upper()
    if not prefix:
        return None
    if cut is None:
        return f"({fold} = ? OR {fold} = '')", [prefix]
    return f"({fold} >= ? AND {fold} < ? OR {fold} = '')", [prefix, prefix + "\x7f"]


class _Budget:
    """A query's deadline, counting only its own time: not the time its consumer holds an answer."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._left = seconds
        self._since = time.monotonic()

    def check(self) -> None:
        if self._left - (time.monotonic() - self._since) < 0:
            raise QueryTooLong(f"the query ran past {self.seconds:g} s")

    @contextlib.contextmanager
    def paused(self):
        self._left -= time.monotonic() - self._since
        try:
            yield
        finally:
            self._since = time.monotonic()


def _has_value(key) -> bool:
    """Whether `key` constrains a match (it fails against an instance that lacks the attribute)."""
    return not all_match([key], Dataset())


def _answer(identifier: Dataset, level: str, row: dict[str, str], stored: Dataset | None = None) -> Dataset:
    """The response identifier: every requested key filled from the level's row, or from `stored` for the keys
    the index does not hold (empty when unknown)."""
    depth = LEVELS.index(level)
    answer = Dataset()
    answer.SpecificCharacterSet = "ISO_IR 192"
    for element in identifier:
        keyword = element.keyword
        if keyword == "SpecificCharacterSet":
            continue
        if keyword == "QueryRetrieveLevel":
            answer.QueryRetrieveLevel = level
            continue
        value = _aggregate(keyword, row)
        if value is None and keyword in ATTRIBUTES:
            column, where, vr = ATTRIBUTES[keyword]
            value = row[column] if LEVELS.index(where) <= depth else ""
            if vr == "US" and value:  # kept as text (index_row reads the binary value); a US element holds a number
                value = int(value)
        elif value is None and stored is not None:
            value = returned(element, stored)
        if element.VR == "SQ":
            answer.add_new(element.tag, "SQ", value if isinstance(value, Sequence) else Sequence())
            continue
        answer.add_new(element.tag, element.VR, value if value not in (None, "") else None)
    if "QueryRetrieveLevel" not in answer:
        answer.QueryRetrieveLevel = level
    return answer


#: Keys computed over the instances under an answer (PS3.4 C.3 optional keys): the column of the level rows
#: that carries each (kept as instances arrive: :mod:`.schema`).
COUNTED = {"NumberOfPatientRelatedStudies": "patient_studies", "NumberOfPatientRelatedSeries": "patient_series",
           "NumberOfPatientRelatedInstances": "patient_instances", "NumberOfStudyRelatedSeries": "study_series",
           "NumberOfStudyRelatedInstances": "study_instances", "NumberOfSeriesRelatedInstances": "series_instances"}


def _aggregate(keyword: str, row: dict[str, str]):
    """A computed key's value for an answer, from its level row (None when that row does not carry it: a
    study's count asked of a patient, say)."""
    if keyword in COUNTED:
        column = COUNTED[keyword]
        return str(row[column]) if column in row else None
    if keyword in AGGREGATED:
        column = AGGREGATED[keyword][0]
        return sorted({value for value in _listed(row.get(column, "")) if value}) or None
    return None
