"""``--journal FILE``: the SOP Instances a peer has confirmed, so that a re-run sends only the rest.

A SQLite file (WAL mode) with one row per instance the peer answered with success
or warning, written right after that answer.  Interrupt a store at any point
(Ctrl-C, kill, power cut) and run the same command again: instances already in
the journal are skipped, so every file ends up stored exactly once as far as the
journal knows (the one in flight when it stopped may be sent again).

A journal belongs to one peer (host, port and called AE, or the DICOMweb URL): it says what *that* peer
confirmed.  Opened for another peer it is refused (a usage error), because skipping files the other peer
never received would send nothing and report success.
"""

from __future__ import annotations

import sqlite3
import threading
import time

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
                             "path TEXT, peer TEXT, at REAL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS about (name TEXT PRIMARY KEY, value TEXT)")
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
            self._db.execute("INSERT OR REPLACE INTO stored VALUES (?, ?, ?, ?)",
                             (sop_instance_uid, path, peer, time.time()))

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM stored").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
