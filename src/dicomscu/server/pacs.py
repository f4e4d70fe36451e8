"""``dicomscu serve``: a Storage and Query/Retrieve SCP on pynetdicom, a storage directory and an index.

* Verification, every Storage SOP class in every transfer syntax pynetdicom knows
  (files are kept as received: the data set bytes are never re-encoded);
* C-FIND, C-MOVE and C-GET in the patient root and study root models;
* stored files go to ``STORAGE/<StudyUID>/<SeriesUID>/<SOPUID>.dcm`` only after the
  three UIDs are checked (digits and dots, at most 64 characters): whatever a peer
  sends, nothing is written outside the storage directory;
* several associations at once (pynetdicom runs each in a thread); index writes
  are serialized.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from io import BytesIO

from pydicom import dcmread
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom import sop_class as sc

from dicomscu.errors import UsageError
from dicomscu.files.instances import PATIENT_ID, SERIES_UID, STUDY_UID, InstanceWriter, discard, remove_partial_files
from dicomscu.files.probe import BadFile, probe, valid_uid
from dicomscu.server.index import Index, QueryTooLong, index_row
from dicomscu.transport import server as tuned_server
from dicomscu.storage_classes import STORAGE_UIDS
from dicomscu.transport.peer import TLS

LOGGER = logging.getLogger("dicomscu.server")
#: What the retrieve handlers yield for an instance that cannot be sent (see Pacs._datasets).
NOT_SENT = "not sent"
#: On SIGTERM or Ctrl-C, associations under way get this long to finish before they are aborted.
STOP_GRACE = 10.0

QR_CLASSES = {
    "find": (sc.PatientRootQueryRetrieveInformationModelFind, sc.StudyRootQueryRetrieveInformationModelFind),
    "move": (sc.PatientRootQueryRetrieveInformationModelMove, sc.StudyRootQueryRetrieveInformationModelMove),
    "get": (sc.PatientRootQueryRetrieveInformationModelGet, sc.StudyRootQueryRetrieveInformationModelGet),
}


@dataclass
class ServerConfig:
    port: int = 11112
    aetitle: str = "DICOMSCU"
    storage: str = "dicomscu-storage"
    host: str = ""
    #: Move destinations: AE title -> (host, port).
    destinations: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: Calling AE titles accepted (empty: any).
    require_calling: list[str] = field(default_factory=list)
    overwrite: bool = True
    #: Connections served at once (each an association, or one on its way to being one).
    max_associations: int = 32
    #: A C-STORE data set larger than this (bytes) is refused with 0xA700 and never held in memory.
    max_size: int = 4 << 30
    #: TLS (our certificate and key, the CA clients must be signed by), or None for plain TCP.
    tls: TLS | None = None


class Pacs:
    """The embedded PACS; ``start()`` listens in the background, ``stop()`` shuts down."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.storage = os.path.realpath(config.storage)
        self.index = _open_storage(self.storage, config.storage)
        self._writer = InstanceWriter(self.storage, "study")
        self._write_lock = threading.Lock()
        self._server = None
        self.ae = self._build_ae()

    def _build_ae(self) -> AE:
        ae = AE(ae_title=self.config.aetitle)
        ae.maximum_pdu_size = 0
        ae.maximum_associations = self.config.max_associations
        if self.config.require_calling:
            ae.require_calling_aet = list(self.config.require_calling)
        ae.add_supported_context(sc.Verification)
        tuned_server.support_storage(ae, STORAGE_UIDS, list(ALL_TRANSFER_SYNTAXES), scu_role=False, scp_role=True)
        for classes in QR_CLASSES.values():
            for uid in classes:
                ae.add_supported_context(uid)
        return ae

    def start(self) -> None:
        handlers = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_C_MOVE, self._on_move),
            (evt.EVT_C_GET, self._on_get),
        ]
        try:
            self._server = tuned_server.listen(
                self.ae, (self.config.host, self.config.port), handlers, on_store=self.store,
                max_size=self.config.max_size,
                ssl_context=self.config.tls.server_context() if self.config.tls else None)
        except OSError as exc:
            raise UsageError(f"serve --port {self.config.port}: cannot listen: {exc.strerror or exc}") from None
        LOGGER.info("serving %s on port %d, storage %s, %d instance(s) indexed",
                    self.config.aetitle, self.config.port, self.storage, self.index.count())

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop accepting, let the associations under way finish (aborting them after `grace` s), then
        close the index: no instance is written after its index is gone."""
        server, self._server = self._server, None
        if server is not None:
            tuned_server.stop(server)
            active = server.active_associations
            if active:
                LOGGER.warning("stopping: waiting up to %g s for %d association(s) to finish", grace, len(active))
            deadline = time.monotonic() + grace
            while active and time.monotonic() < deadline:
                time.sleep(0.05)
                active = [assoc for assoc in active if assoc.is_alive()]
            for assoc in active:
                LOGGER.warning("stopping: aborting the association from %s", assoc.requestor.address)
                assoc.abort()
            for assoc in active:
                assoc.join(timeout=2)
        with self._write_lock:  # a store still finishing its file and row completes first
            self.index.close()

    # -- C-STORE ---------------------------------------------------------------
    def _on_store(self, event) -> int:
        """EVT_C_STORE (requests the direct path of :mod:`dicomscu.transport.server` leaves to pynetdicom)."""
        request = event.request
        raw = request.DataSet.getvalue() if request.DataSet is not None else b""
        return self.store(str(request.AffectedSOPClassUID or ""), str(request.AffectedSOPInstanceUID or ""), raw,
                          event.context.transfer_syntax)

    def store(self, sop_class: str, sop_instance: str, raw: bytes, syntax) -> int:
        """Check, write and index one received instance; the C-STORE status.

        The file and its row are one unit: the file is written (temporary name,
        then renamed), then indexed; if the row cannot be written the file is
        removed.  An instance sent again under another study or series replaces
        its old file.  So the index and the files always agree.
        """
        try:
            row = index_row(raw, syntax)  # also proves the data set whole
        except BadFile as exc:
            LOGGER.warning("refused %s: %s", sop_instance, exc)
            return 0xC000  # Error: cannot understand
        if not row["sop_uid"] or not row["sop_class"]:
            LOGGER.warning("refused %s: the data set has no SOP Class or SOP Instance UID", sop_instance)
            return 0xC000
        if (row["sop_uid"], row["sop_class"]) != (sop_instance, sop_class):
            LOGGER.warning("refused %s: the data set's SOP Class/Instance UIDs (%s, %s) are not the request's",
                           sop_instance, row["sop_class"], row["sop_uid"])
            return 0xA900  # Data Set does not match SOP Class
        uids = (row["study_uid"], row["series_uid"], row["sop_uid"], row["sop_class"])
        if not all(valid_uid(uid) for uid in uids):
            LOGGER.warning("refused %s: invalid UID among %r", sop_instance, uids)
            return 0xA900  # its identifying UIDs are not UIDs
        if not self.config.overwrite and self.index.contains(sop_instance):
            return 0x0111  # Duplicate SOP Instance
        values = {PATIENT_ID: row["patient_id"], STUDY_UID: row["study_uid"], SERIES_UID: row["series_uid"]}
        with self._write_lock:
            earlier = self.index.path_of(sop_instance)
            try:
                path = self._writer.write(raw, sop_class, sop_instance, syntax, values)
            except OSError as exc:
                LOGGER.error("cannot store %s: %s", sop_instance, exc)
                return 0xA700  # Refused: out of resources
            row["path"] = os.path.relpath(path, self.storage)
            try:
                self.index.add(row)
            except sqlite3.Error as exc:  # "database or disk is full" is not an OSError
                LOGGER.error("cannot index %s (%s): its file is removed", sop_instance, exc)
                if earlier is None or self.resolve(earlier) != path:
                    discard(path)
                return 0xA700
            if earlier is not None and self.resolve(earlier) != path:
                discard(self.resolve(earlier))  # the same instance, now under another study or series
        return 0x0000

    def resolve(self, path: str) -> str:
        """An index path (relative to the storage, or absolute from older indexes) as a file path."""
        return os.path.join(self.storage, path)

    # -- C-FIND / C-MOVE / C-GET -------------------------------------------------
    def _matches(self, identifier):
        """(level, matches); matches is None when the query ran past its deadline."""
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        try:
            return level, list(self.index.query(identifier, level))
        except QueryTooLong as exc:
            LOGGER.warning("query stopped: %s", exc)
            return level, None

    def _on_find(self, event):
        level, found = self._matches(event.identifier)
        if found is None:
            yield 0xA700, None  # Refused: out of resources
            return
        if not found and level not in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
            yield 0xA900, None
            return
        for match in found:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, match.identifier

    def _datasets(self, paths):
        """(status, data set) per stored file, each proven whole first (the client's probe).

        A file that is gone, cut or corrupt is one failed sub-operation, named in the
        log, and the others still go: pynetdicom counts a sub-operation failed, and goes
        on, when it is given something that is not a data set (:data:`NOT_SENT`).
        """
        for path in paths:
            try:
                with open(self.resolve(path), "rb") as handle:
                    data = handle.read()
                probe(data)
                yield 0xFF00, dcmread(BytesIO(data))
            except (OSError, BadFile) as exc:
                LOGGER.error("not sent: %s: %s", self.resolve(path), getattr(exc, "strerror", None) or exc)
                yield 0xFF00, NOT_SENT

    def _on_move(self, event):
        destination = self.config.destinations.get(_ae_text(event.move_destination))
        if destination is None:
            yield None, None  # pynetdicom answers 0xA801: move destination unknown
            return
        _, found = self._matches(event.identifier)
        # Propose exactly the contexts the instances need on the sub-association.
        yield destination[0], destination[1], {"contexts": _contexts_for(found or [])}
        if found is None:  # pynetdicom's order: destination, count, statuses
            yield 0
            yield 0xA701, None  # Refused: out of resources, unable to calculate the number of matches
            return
        paths = [path for match in found for path in match.paths]
        yield len(paths)
        yield from self._cancellable(event, paths)

    def _on_get(self, event):
        _, found = self._matches(event.identifier)
        if found is None:
            yield 0
            yield 0xA701, None
            return
        paths = [path for match in found for path in match.paths]
        yield len(paths)
        yield from self._cancellable(event, paths)

    def _cancellable(self, event, paths):
        for status, dataset in self._datasets(paths):
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield status, dataset


def _open_storage(storage: str, given: str) -> Index:
    """The storage directory, checked usable (writable, with its index), or a usage error naming it."""
    if os.path.exists(storage) and not os.path.isdir(storage):
        raise UsageError(f"--storage {given}: not a directory")
    problem = None
    try:
        os.makedirs(storage, exist_ok=True)
        for path in remove_partial_files(storage):  # left by a kill -9: never a whole instance
            LOGGER.warning("removed the partial file %s", path)
        probe = os.path.join(storage, ".dicomscu-write-check")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
        return Index(os.path.join(storage, "index.sqlite"))
    except OSError as exc:
        problem = exc.strerror or str(exc)
    except sqlite3.Error as exc:
        problem = f"cannot open its index {os.path.join(storage, 'index.sqlite')}: {exc}"
    raise UsageError(f"--storage {given}: {problem}")


def _ae_text(value) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value or "").strip()


def _contexts_for(found) -> list:
    """(SOP Class, [its transfer syntax, Implicit VR LE]) for the instances of `found`, at most 128."""
    from pydicom.uid import ImplicitVRLittleEndian
    from pynetdicom.presentation import build_context

    pairs = sorted({(row["sop_class"], row["transfer_syntax"]) for match in found for row in match.rows})
    contexts = []
    for sop_class, syntax in pairs:
        syntaxes = [syntax] if syntax == ImplicitVRLittleEndian else [syntax, ImplicitVRLittleEndian]
        contexts.append(build_context(sop_class, syntaxes))
    if len(contexts) > 128:
        LOGGER.warning("C-MOVE needs %d presentation contexts; proposing the first 128", len(contexts))
    return contexts[:128] or [build_context(sc.SecondaryCaptureImageStorage)]
