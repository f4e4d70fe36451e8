"""``--journal FILE``: the SOP Instances a peer has confirmed, so that a re-run sends only the rest.

A SQLite file (WAL mode) with one row per instance the peer answered with success
or warning, written right after that answer.  Interrupt a store at any point
(Ctrl-C, kill, power cut) and run the same command again: instances already in
the journal are skipped, so every file ends up stored exactly once as far as the
journal knows (the one in flight when it stopped may be sent again).

A journal belongs to one peer (host, port and called AE, or the DICOMweb URL): it says what *that* peer
confirmed.  Opened for another peer it is refused (a usage error), because skipping files the other peer
never received would send nothing and report success.

With storage commitment (``--commit``) a row also records when the peer took responsibility for the
instance, so that a re-run asks only for what is not committed yet; a journal from before that column gets it
when opened.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from dicomscu.errors import UsageError


class Journal:
    """The journal at `path`; with `peer` (its identity: ``str()`` of a Peer or WebPeer) it is checked to belong
    to that peer, and is marked as that peer's when new."""

    def __init__(self, path: str, peer: str | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS stored (sop_instance_uid TEXT PRIMARY KEY, "
                             "path TEXT, peer TEXT, at REAL, committed REAL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS about (name TEXT PRIMARY KEY, value TEXT)")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(stored)")}
            if "committed" not in columns:  # a journal from before storage commitment: upgraded in place
                self._db.execute("ALTER TABLE stored ADD COLUMN committed REAL")
            if peer is not None:
                self._claim(peer)
        except sqlite3.Error as exc:
            raise UsageError(f"{path}: cannot open it as a journal: {exc}", option="journal") from None

    def _claim(self, peer: str) -> None:
        """Check that the journal is `peer`'s (its mark, or, in a journal from before marks, the peers of its
        rows), and mark it so."""
        found = self._db.execute("SELECT value FROM about WHERE name = 'peer'").fetchone()
        owners = {found[0]} if found else {row[0] for row in
                                            self._db.execute("SELECT DISTINCT peer FROM stored LIMIT 2")}
        others = sorted(owner for owner in owners if owner and owner != peer)
        if others:
            self._db.close()
            raise UsageError(f"{self.path} is the journal of {others[0]}, not of {peer}: its instances were "
                             f"confirmed by that peer, and skipping them here would send nothing",
                             option="journal", hint="give another --journal file for this peer (or delete "
                                                    "that one to start over)")
        self._db.execute("INSERT OR IGNORE INTO about VALUES ('peer', ?)", (peer,))

    def __contains__(self, sop_instance_uid: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM stored WHERE sop_instance_uid = ?", (sop_instance_uid,)).fetchone()
        return row is not None

    def record(self, sop_instance_uid: str, path: str, peer: str) -> None:
        with self._lock:
            # (sent again: the peer's commitment, if any, was for the earlier copy, so it is asked again)
            self._db.execute("INSERT OR REPLACE INTO stored (sop_instance_uid, path, peer, at) VALUES (?, ?, ?, ?)",
                             (sop_instance_uid, path, peer, time.time()))

    def is_committed(self, sop_instance_uid: str) -> bool:
        """The peer took responsibility for this instance (storage commitment) in an earlier run."""
        with self._lock:
            row = self._db.execute("SELECT committed FROM stored WHERE sop_instance_uid = ?",
                                   (sop_instance_uid,)).fetchone()
        return row is not None and row[0] is not None

    def record_commitment(self, references) -> None:
        """Instances ((SOP Class, SOP Instance) pairs) the peer committed: kept in one transaction."""
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for _, sop_instance in references:
                    self._db.execute("INSERT INTO stored (sop_instance_uid, committed) VALUES (?, ?) "
                                     "ON CONFLICT(sop_instance_uid) DO UPDATE SET committed = excluded.committed",
                                     (sop_instance, now))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM stored").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


@contextmanager
def journal_for(journal, peer) -> Iterator[Journal | None]:
    """A `journal` argument as the API takes it (None, a :class:`Journal`, or the path of one) as an open
    Journal or None: a path is opened for `peer` (another peer's journal is refused) and closed after."""
    if journal is None or isinstance(journal, Journal):
        yield journal
        return
    opened = Journal(os.fspath(journal), peer=str(peer))
    try:
        yield opened
    finally:
        opened.close()
