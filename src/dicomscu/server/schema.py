"""The index's tables, one per level of the PS3.4 query model, and how an older index is upgraded in place.

``instances`` holds one row per stored instance: every indexed attribute as read from its data set, its
transfer syntax and its file.  It is the truth: ``--reindex`` rebuilds it from the files.  ``patients``,
``studies`` (patient and study attributes) and ``series`` hold one row per patient, study and series, with
the counts a query answers (NumberOfStudyRelatedInstances, ...), a study's modalities and SOP classes, and
the file of one of their instances (for the keys read from a stored file).  SQLite triggers keep them in
step with ``instances`` on every insert, replacement and deletion, whatever the path that writes (a C-STORE,
STOW-RS, group commit, ``--reindex``, adoption at start): a study query reads one row per study, not one per
instance.

A patient's (a study's, a series') attributes are those of the instance stored last in it: a corrected
instance sent again corrects its study.  Written once per new value: an instance that agrees with its study
(the usual case) only adds one to its counts.
"""

from __future__ import annotations

import logging
import sqlite3

#: Raised by each change of the tables below; an index with a lower ``PRAGMA user_version`` is upgraded: its
#: level tables are built again from its instances (1: one table of instances; 2: studies and series; 3: and
#: patients).
VERSION = 3
#: Keyword columns of the instances table, by the level whose row holds them (besides ``instances``).
PATIENT_COLUMNS = ["patient_id", "patient_name", "patient_birth_date", "patient_sex"]
STUDY_COLUMNS = ["study_uid", "study_date", "study_time", "accession_number", "study_id", "study_description",
                 "referring_physician"]
SERIES_COLUMNS = ["series_uid", "modality", "series_number", "series_description"]
#: Computed columns: a patient's studies, series and instances; a study's series and instances, its
#: modalities and SOP classes (comma-separated, with repeats: readers take the set); a series' instances.
PATIENT_COUNTS = ["patient_studies", "patient_series", "patient_instances"]
STUDY_COUNTS = ["study_series", "study_instances", "modalities", "sop_classes"]
SERIES_COUNTS = ["series_instances"]

#: A patient's name folded for matching without regard to case, when SQL can fold it (printable ASCII: what
#: upper() folds); '' for a name with any other character, which the rules match ("ß" folds to "ss").  Indexed
#: on patients and studies: a name or name prefix query reads the names it can match, and those with other
#: characters.
NAME_FOLD = "(CASE WHEN patient_name GLOB '*[^ -~]*' THEN '' ELSE upper(patient_name) END)"


def name_fold(table: str) -> str:
    """:data:`NAME_FOLD` on `table`'s column (the same expression, so that the index on it is used)."""
    return NAME_FOLD.replace("patient_name", f"{table}.patient_name")


def _statements(script: str, end: str = ";") -> list[str]:
    """The statements of `script`, ended by `end` at a line's end (a trigger's body holds ';' of its own)."""
    parts, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        if line.rstrip().endswith(end) and (end == ";" or line.strip() == end):
            parts.append("\n".join(current))
            current = []
    return parts


def _instances(columns: list[str]) -> str:
    return (f"CREATE TABLE IF NOT EXISTS instances ("
            f"{', '.join(f'{c} TEXT' + (' PRIMARY KEY' if c == 'sop_uid' else '') for c in columns)});\n"
            "CREATE INDEX IF NOT EXISTS by_study ON instances (study_uid);\n"
            "CREATE INDEX IF NOT EXISTS by_series ON instances (series_uid);\n")


_LEVEL_TABLES = f"""
CREATE TABLE IF NOT EXISTS patients (
    patient_id TEXT PRIMARY KEY, {", ".join(f"{c} TEXT" for c in PATIENT_COLUMNS[1:])},
    patient_studies INTEGER NOT NULL DEFAULT 0, patient_series INTEGER NOT NULL DEFAULT 0,
    patient_instances INTEGER NOT NULL DEFAULT 0, path TEXT);
CREATE INDEX IF NOT EXISTS patients_by_name_fold ON patients ({NAME_FOLD});
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY, {", ".join(f"{c} TEXT" for c in PATIENT_COLUMNS + STUDY_COLUMNS[1:])},
    study_series INTEGER NOT NULL DEFAULT 0, study_instances INTEGER NOT NULL DEFAULT 0,
    modalities TEXT NOT NULL DEFAULT '', sop_classes TEXT NOT NULL DEFAULT '', path TEXT);
CREATE INDEX IF NOT EXISTS studies_by_patient ON studies (patient_id);
CREATE INDEX IF NOT EXISTS studies_by_accession ON studies (accession_number);
CREATE INDEX IF NOT EXISTS studies_by_date ON studies (study_date);
CREATE INDEX IF NOT EXISTS studies_by_name_fold ON studies ({NAME_FOLD});
CREATE TABLE IF NOT EXISTS series (
    series_uid TEXT PRIMARY KEY, study_uid TEXT, {", ".join(f"{c} TEXT" for c in SERIES_COLUMNS[1:])},
    series_instances INTEGER NOT NULL DEFAULT 0, sop_classes TEXT NOT NULL DEFAULT '', path TEXT);
CREATE INDEX IF NOT EXISTS series_by_study ON series (study_uid);
CREATE INDEX IF NOT EXISTS series_by_modality ON series (modality);
"""


def _refresh_study(uid: str) -> str:
    """Recompute a study's series count, modalities and SOP classes from its series rows (run when a series
    appears, changes study, modality or classes, or goes: not per instance)."""
    return (f"UPDATE studies SET "
            f"study_series = (SELECT COUNT(*) FROM series s WHERE s.study_uid = studies.study_uid), "
            f"modalities = COALESCE((SELECT group_concat(s.modality) FROM series s "
            f"WHERE s.study_uid = studies.study_uid AND s.modality <> ''), ''), "
            f"sop_classes = COALESCE((SELECT group_concat(s.sop_classes) FROM series s "
            f"WHERE s.study_uid = studies.study_uid AND s.sop_classes <> ''), '') "
            f"WHERE study_uid = {uid}")


def _refresh_patient(uid: str) -> str:
    """Recompute a patient's study and series counts from its studies' rows (run when a study appears, goes,
    changes patient or series count: not per instance)."""
    return (f"UPDATE patients SET "
            f"patient_studies = (SELECT COUNT(*) FROM studies s WHERE s.patient_id = patients.patient_id), "
            f"patient_series = COALESCE((SELECT SUM(s.study_series) FROM studies s "
            f"WHERE s.patient_id = patients.patient_id), 0) "
            f"WHERE patient_id = {uid}")


def _set_when_different(table: str, key: str, columns: list[str]) -> str:
    """Give `table`'s row the new instance's values where they differ (no write when they agree)."""
    assignments = ", ".join(f"{c} = NEW.{c}" for c in columns)
    different = " OR ".join(f"{c} IS NOT NEW.{c}" for c in columns)
    return f"UPDATE {table} SET {assignments} WHERE {key} = NEW.{key} AND ({different})"


def _repick_path(table: str, key: str) -> str:
    """Point `table`'s row at another of its instances' files when the one it named goes (through the
    instances' index on `key`)."""
    return (f"UPDATE {table} SET path = COALESCE((SELECT path FROM instances WHERE {key} = OLD.{key} LIMIT 1), '') "
            f"WHERE {key} = OLD.{key} AND path IS OLD.path")


#: A patient's row's file when the one it named goes: an instance of the patient's found through its studies
#: (the instances table has no index on patient_id); only for an instance filed under another patient's study
#: (data that disagrees with itself) the instances are scanned (COALESCE stops at its first value).
_REPICK_PATIENT_PATH = (
    "UPDATE patients SET path = COALESCE("
    "(SELECT i.path FROM studies s JOIN instances i ON i.study_uid = s.study_uid "
    "WHERE s.patient_id = OLD.patient_id AND i.patient_id = OLD.patient_id LIMIT 1), "
    "(SELECT path FROM instances WHERE patient_id = OLD.patient_id LIMIT 1), '') "
    "WHERE patient_id = OLD.patient_id AND path IS OLD.path")


_study_values = PATIENT_COLUMNS + STUDY_COLUMNS[1:]
_TRIGGERS = f"""
CREATE TRIGGER instance_added AFTER INSERT ON instances BEGIN
    INSERT INTO patients ({", ".join(PATIENT_COLUMNS)}, patient_instances, path)
        VALUES ({", ".join(f"NEW.{c}" for c in PATIENT_COLUMNS)}, 1, NEW.path)
        ON CONFLICT (patient_id) DO UPDATE SET patient_instances = patient_instances + 1, path = excluded.path;
    {_set_when_different("patients", "patient_id", PATIENT_COLUMNS[1:])};
    INSERT INTO studies (study_uid, {", ".join(_study_values)}, study_instances, path)
        VALUES (NEW.study_uid, {", ".join(f"NEW.{c}" for c in _study_values)}, 1, NEW.path)
        ON CONFLICT (study_uid) DO UPDATE SET study_instances = study_instances + 1, path = excluded.path;
    {_set_when_different("studies", "study_uid", _study_values)};
    INSERT INTO series (series_uid, study_uid, {", ".join(SERIES_COLUMNS[1:])}, series_instances, sop_classes, path)
        VALUES (NEW.series_uid, NEW.study_uid, {", ".join(f"NEW.{c}" for c in SERIES_COLUMNS[1:])}, 1,
                NEW.sop_class, NEW.path)
        ON CONFLICT (series_uid) DO UPDATE SET series_instances = series_instances + 1, path = excluded.path;
    {_set_when_different("series", "series_uid", ["study_uid", *SERIES_COLUMNS[1:]])};
    UPDATE series SET sop_classes = sop_classes || ',' || NEW.sop_class
        WHERE series_uid = NEW.series_uid AND NEW.sop_class <> ''
        AND instr(',' || sop_classes || ',', ',' || NEW.sop_class || ',') = 0;
END;
CREATE TRIGGER instance_removed AFTER DELETE ON instances BEGIN
    UPDATE series SET series_instances = series_instances - 1 WHERE series_uid = OLD.series_uid;
    DELETE FROM series WHERE series_uid = OLD.series_uid AND series_instances <= 0;
    {_repick_path("series", "series_uid")};
    UPDATE series SET sop_classes = COALESCE((SELECT group_concat(DISTINCT sop_class) FROM instances
                                              WHERE series_uid = OLD.series_uid AND sop_class <> ''), '')
        WHERE series_uid = OLD.series_uid AND NOT EXISTS (
            SELECT 1 FROM instances WHERE series_uid = OLD.series_uid AND sop_class = OLD.sop_class);
    UPDATE studies SET study_instances = study_instances - 1 WHERE study_uid = OLD.study_uid;
    DELETE FROM studies WHERE study_uid = OLD.study_uid AND study_instances <= 0;
    {_repick_path("studies", "study_uid")};
    UPDATE patients SET patient_instances = patient_instances - 1 WHERE patient_id = OLD.patient_id;
    DELETE FROM patients WHERE patient_id = OLD.patient_id AND patient_instances <= 0;
    {_REPICK_PATIENT_PATH};
END;
CREATE TRIGGER study_added AFTER INSERT ON studies BEGIN
    {_refresh_patient("NEW.patient_id")};
END;
CREATE TRIGGER study_changed AFTER UPDATE OF patient_id, study_series ON studies BEGIN
    {_refresh_patient("OLD.patient_id")};
    {_refresh_patient("NEW.patient_id")};
END;
CREATE TRIGGER study_removed AFTER DELETE ON studies BEGIN
    {_refresh_patient("OLD.patient_id")};
END;
CREATE TRIGGER series_added AFTER INSERT ON series BEGIN
    {_refresh_study("NEW.study_uid")};
END;
CREATE TRIGGER series_changed AFTER UPDATE OF study_uid, modality, sop_classes ON series BEGIN
    {_refresh_study("OLD.study_uid")};
    {_refresh_study("NEW.study_uid")};
END;
CREATE TRIGGER series_removed AFTER DELETE ON series BEGIN
    {_refresh_study("OLD.study_uid")};
END;
"""

#: The triggers' names, as :data:`_TRIGGERS` makes them (dropped before they are made again).
_TRIGGER_NAMES = [statement.split()[2] for statement in _statements(_TRIGGERS, "END;")]
#: Indexes of the instances table that version 1 kept, now on ``studies``.
_FORMER_INDEXES = ["by_patient", "by_accession", "by_study_date", "by_patient_name_fold"]


def connect(path: str, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A connection to the index at `path` (autocommit: transactions are explicit), with triggers that see the
    rows INSERT OR REPLACE replaces (so a replaced instance leaves its former study's counts), and temporary
    data in memory."""
    db = sqlite3.connect(path, check_same_thread=check_same_thread, isolation_level=None)
    db.execute("PRAGMA recursive_triggers=ON")
    # a write whose triggers write other tables keeps a statement journal (to undo just that statement): in
    # memory, not in a temporary file per statement (a row's write took 27 µs with the files, 18 µs without)
    db.execute("PRAGMA temp_store=MEMORY")
    return db


def prepare(db: sqlite3.Connection, columns: list[str]) -> None:
    """Create the tables of an empty index, or upgrade an earlier version's in place, in one transaction (a
    kill leaves the index as it was).  The triggers are made again at each opening: they are code, and the
    index keeps the bodies of the version that opened it last."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    db.execute("BEGIN IMMEDIATE")
    try:
        existed = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'instances'").fetchone() is not None
        for statement in _statements(_instances(columns)):
            db.execute(statement)
        if existed:
            _add_missing_columns(db, columns)
        for name in _TRIGGER_NAMES:
            db.execute(f"DROP TRIGGER IF EXISTS {name}")
        for statement in _statements(_LEVEL_TABLES):
            db.execute(statement)  # (IF NOT EXISTS: an index dropped by hand comes back)
        if version < VERSION:
            _fill_level_tables(db)
            for name in _FORMER_INDEXES:
                db.execute(f"DROP INDEX IF EXISTS {name}")
            db.execute(f"PRAGMA user_version = {VERSION}")
        for statement in _statements(_TRIGGERS, "END;"):
            db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if existed and version < VERSION:
        logging.getLogger("dicomscu.server").info("the index was upgraded to version %d (tables per level)",
                                                  VERSION)


def _fill_level_tables(db: sqlite3.Connection) -> None:
    """The patient, study and series rows of the instances already indexed (an upgrade; nothing for a new
    index): the values of one instance per patient (study, series), as the triggers keep them for the next ones;
    the counts computed."""
    db.execute("DELETE FROM series")
    db.execute("DELETE FROM studies")
    db.execute("DELETE FROM patients")
    db.execute(f"""INSERT INTO patients ({", ".join(PATIENT_COLUMNS)}, patient_instances, path)
                   SELECT {", ".join(PATIENT_COLUMNS)}, COUNT(*), max(path) FROM instances GROUP BY patient_id""")
    db.execute(f"""INSERT INTO studies (study_uid, {", ".join(_study_values)}, study_instances, path)
                   SELECT study_uid, {", ".join(_study_values)}, COUNT(*), max(path) FROM instances
                   GROUP BY study_uid""")
    db.execute(f"""INSERT INTO series (series_uid, study_uid, {", ".join(SERIES_COLUMNS[1:])}, series_instances,
                                       sop_classes, path)
                   SELECT series_uid, study_uid, {", ".join(SERIES_COLUMNS[1:])}, COUNT(*),
                          COALESCE(group_concat(DISTINCT NULLIF(sop_class, '')), ''), max(path)
                   FROM instances GROUP BY series_uid""")
    db.execute(_refresh_study("studies.study_uid"))
    db.execute(_refresh_patient("patients.patient_id"))


def _add_missing_columns(db: sqlite3.Connection, columns: list[str]) -> None:
    """An index from an earlier version gets the columns added since (empty for the instances it holds until
    ``--reindex`` reads them again)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(instances)")}
    missing = [column for column in columns if column not in present]
    for column in missing:
        db.execute(f"ALTER TABLE instances ADD COLUMN {column} TEXT")
    if missing and db.execute("SELECT 1 FROM instances LIMIT 1").fetchone():
        logging.getLogger("dicomscu.server").warning(
            "the index was made by an earlier version: %s added, empty for the instances already kept "
            "(serve --reindex fills them)", ", ".join(missing))
