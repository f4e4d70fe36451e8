"""``--journal FILE``: the SOP Instances a peer has confirmed, so that a re-run sends only the rest.

A SQLite file (WAL mode) with one row per instance the peer answered with success
or warning, written right after that answer.  Interrupt a store at any point
(Ctrl-C, kill, power cut) and run the same command again: instances already in
the journal are skipped, so every file ends up stored exactly once as far as the
journal knows (the one in flight when it stopped may be sent again).
"""

from __future__ import annotations

import sqlite3
import threading
import time

from dicomscu.errors import UsageError


class Journal:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS stored (sop_instance_uid TEXT PRIMARY KEY, "
                             "path TEXT, peer TEXT, at REAL)")
        except sqlite3.Error as exc:
            raise UsageError(f"{path}: cannot open it as a journal: {exc}", option="journal") from None

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
