"""``dicomscu serve``: a Storage, Query/Retrieve and Storage Commitment SCP on dicomscu's own protocol core, a
storage directory and an index.

* Verification, every Storage SOP class in every transfer syntax (files are kept
  as received: the data set bytes are never re-encoded);
* C-FIND, C-MOVE and C-GET in the patient root and study root models, C-CANCEL honoured;
* Storage Commitment Push Model (:mod:`dicomscu.server.commitment`);
* stored files go to ``STORAGE/<StudyUID>/<SeriesUID>/<SOPUID>.dcm`` only after the
  three UIDs are checked (digits and dots, at most 64 characters): whatever a peer
  sends, nothing is written outside the storage directory;
* several associations at once, one thread each (:mod:`dicomscu.transport.listener`);
  index writes are serialized.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from dicomscu import uids
from dicomscu.errors import DicomscuError, UsageError
from dicomscu.files.codec import decode, encode
from dicomscu.files.instances import InstanceWriter, discard, remove_partial_files
from dicomscu.files.probe import BadFile, even_fragments, odd_fragments, probe, valid_uid
from dicomscu.files.sending import offered_to, payload, syntax_to_send
from dicomscu.files.spool import Spool
from dicomscu.operations.provider import Later, Provider
from dicomscu.protocol import commands as dimse
from dicomscu.protocol.messages import Message
from dicomscu.protocol.negotiation import Proposal
from dicomscu.server import SERVE_PORT  # (defined where the command line reads it cheaply)
from dicomscu.server.access import AccessPolicy, Credentials
from dicomscu.server.index import LEVELS, Index, QueryTooLong, Reindexed, fsync, index_row
from dicomscu.storage_classes import STORAGE_UIDS
from dicomscu.transport.association import associate
from dicomscu.transport.channel import Channel
from dicomscu.transport.listener import AcceptPolicy, Listener
from dicomscu.transport.peer import TLS, Peer

LOGGER = logging.getLogger("dicomscu.server")
#: On SIGTERM or Ctrl-C, associations under way get this long to finish before they are aborted.
STOP_GRACE = 10.0
#: (0008,0058) Failed SOP Instance UID List, returned with a retrieval's final status (PS3.4 C.4.2.1.4).
FAILED_UIDS = "FailedSOPInstanceUIDList"

QR_CLASSES = {
    "find": (uids.PATIENT_ROOT_FIND, uids.STUDY_ROOT_FIND),
    "move": (uids.PATIENT_ROOT_MOVE, uids.STUDY_ROOT_MOVE),
    "get": (uids.PATIENT_ROOT_GET, uids.STUDY_ROOT_GET),
}
#: Identifiers of queries and retrievals: as DCMTK and Orthanc, the three little-endian uncompressed syntaxes.
QUERY_SYNTAXES = (uids.EXPLICIT_VR_LE, uids.IMPLICIT_VR_LE, uids.DEFLATED_EXPLICIT_VR_LE)


@dataclass
class ServerConfig:
    port: int = SERVE_PORT
    aetitle: str = "DICOMSCU"
    storage: str = "dicomscu-storage"
    host: str = ""
    #: Move destinations: AE title -> (host, port).
    destinations: dict[str, tuple[str, int]] = field(default_factory=dict)
    #: Calling AE titles accepted (empty: any).
    require_calling: list[str] = field(default_factory=list)
    overwrite: bool = True
    #: Associations established at once; one more is rejected (transient, local limit exceeded).
    max_associations: int = 32
    #: C-STOREs a requestor may have outstanding when it proposes an asynchronous operations window
    #: (PS3.7 D.3.3.3): their rows are then written in one transaction, their responses sent in one write.
    window: int = 64
    #: A C-STORE data set larger than this (bytes) is refused with 0xA700 and never held in memory.
    max_size: int = 4 << 30
    #: TLS (our certificate and key, the CA clients must be signed by), or None for plain TCP.
    tls: TLS | None = None
    #: Also serve DICOMweb (QIDO-RS, WADO-RS, STOW-RS under /dicom-web) on this HTTP port.
    http_port: int | None = None
    #: The address the HTTP side listens on: loopback unless opened on purpose (``--http-bind``).
    http_bind: str = "127.0.0.1"
    #: What an HTTP request must authenticate with (none: no authentication).
    http_credentials: Credentials = field(default_factory=Credentials)
    #: Nothing is stored, over either protocol (C-STORE 0x0124, STOW-RS 403).
    read_only: bool = False
    #: HTTP connections one client address may hold at once; one more is answered 503 and closed.
    http_per_client: int = 32
    #: Web page origins that may read DICOMweb answers (CORS; ``*``: any); none: pages from this machine.
    http_cors: tuple[str, ...] = ()

    @property
    def access(self) -> AccessPolicy:
        """The rules both protocols apply (:mod:`dicomscu.server.access`)."""
        return AccessPolicy(read_only=self.read_only, require_calling=tuple(self.require_calling),
                            client_certificates=bool(self.tls and self.tls.ca and self.tls.verify),
                            credentials=self.http_credentials)


def accept_policy(config: ServerConfig) -> AcceptPolicy:
    supported: dict[str, tuple[str, ...]] = {uid: uids.TRANSFER_SYNTAXES for uid in STORAGE_UIDS}
    supported[uids.VERIFICATION] = (uids.IMPLICIT_VR_LE, uids.EXPLICIT_VR_LE)
    for classes in QR_CLASSES.values():
        for uid in classes:
            supported[uid] = QUERY_SYNTAXES
    supported[uids.STORAGE_COMMITMENT_PUSH] = (uids.EXPLICIT_VR_LE, uids.IMPLICIT_VR_LE)
    return AcceptPolicy(config.aetitle, supported, roles_allowed=frozenset(STORAGE_UIDS),
                        require_calling=tuple(config.require_calling), max_associations=config.max_associations,
                        max_dataset=config.max_size, window=config.window)


class Pacs:
    """The embedded PACS; ``start()`` listens in the background, ``stop()`` shuts down."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.storage = os.path.realpath(config.storage)
        self._storage_lock, self.index = _open_storage(self.storage, config.storage)
        self._writer = InstanceWriter(self.storage, "study")
        self._write_lock = threading.Lock()
        self._listener: Listener | None = None
        self._web: Any = None  # the DICOMweb server, when --http is given

    def start(self) -> None:
        listener = Listener((self.config.host, self.config.port), accept_policy(self.config),
                            QueryRetrieve(self).serve,
                            ssl_context=self.config.tls.server_context() if self.config.tls else None)
        try:
            try:
                listener.start()
            except OSError as exc:
                raise UsageError(f"{self.config.port}: cannot listen: {exc.strerror or exc}", option="port") from None
            if self.config.http_port is not None:
                try:
                    self._start_web()
                except BaseException:
                    listener.stop()
                    raise
        except BaseException:  # never started: the storage is free for another serve
            self.index.close()
            self.release_storage()
            raise
        self._listener = listener
        LOGGER.info("serving %s on port %d, storage %s, %d instance(s) indexed, at most %d associations at once",
                    self.config.aetitle, self.port, self.storage, self.index.count(),
                    self.config.max_associations)

    def _start_web(self) -> None:
        """The DICOMweb side, under the same access policy as the DIMSE side (refused when it would be weaker)."""
        from dicomscu.server.web import DicomWebServer

        config = self.config
        warning = config.access.check_http_side(config.http_bind)
        context = config.tls.server_context() if config.tls else None  # HTTPS beside a TLS DIMSE port
        try:
            self._web = DicomWebServer(self, (config.http_bind, config.http_port or 0), context,
                                       config.http_per_client).start()
        except OSError as exc:
            raise UsageError(f"{config.http_port}: cannot listen: {exc.strerror or exc}", option="http_port") from None
        if warning:
            LOGGER.warning("%s", warning)
        LOGGER.info("serving DICOMweb on %s://%s:%d/dicom-web%s", "https" if context else "http",
                    config.http_bind or "0.0.0.0", self._web.port,
                    " (credentials required)" if config.http_credentials else "")

    @property
    def port(self) -> int:
        """The port the DIMSE side listens on (the one the OS chose for ``port=0``)."""
        listener = getattr(self, "_listener", None)
        return listener.port if listener is not None else self.config.port

    @property
    def http_port(self) -> int | None:
        """The port the DICOMweb side listens on (the one the OS chose for ``http_port=0``), or None."""
        return self._web.port if self._web is not None else None

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop accepting, let the associations under way finish (aborting them after `grace` s), then
        close the index: no instance is written after its index is gone."""
        listener, self._listener = self._listener, None
        web, self._web = self._web, None
        if web is not None:
            web.stop()
        if listener is not None:
            listener.stop()
            listener.wait(grace)
        with self._write_lock:  # a store still finishing its file and row completes first
            self.index.close()
            _mark_clean(self.storage)  # files and rows agree: the next start need not walk the storage
        self.release_storage()

    def release_storage(self) -> None:
        """Let another serve use the storage (after :meth:`stop`, or when this one never started)."""
        lock, self._storage_lock = self._storage_lock, None
        if lock is not None:
            lock.close()

    def spool(self, sop_class: str, sop_instance: str, syntax: str) -> Spool | None:
        """A file in the storage for a C-STORE data set about to arrive (its fragments go straight
        there), or None to receive it in memory (UIDs a file meta cannot hold: it will be refused).  A read-only
        server writes nothing: the data set is dropped as it arrives."""
        if self.config.read_only:
            return _Dropped()  # type: ignore[return-value]
        if not (valid_uid(sop_class) and valid_uid(sop_instance)):
            return None
        try:
            return Spool.for_instance(self.storage, sop_class, sop_instance, syntax)
        except OSError as exc:
            LOGGER.error("cannot open a file for %s: %s", sop_instance, exc)
            return None

    def store(self, sop_class: str, sop_instance: str, data: bytes | bytearray | Spool, syntax: str) -> int:
        """Check, write and index one received instance; the C-STORE status (:meth:`store_later`, its row
        written before this returns)."""
        outcome = self.store_later(sop_class, sop_instance, data, syntax)
        return outcome if isinstance(outcome, int) else outcome()

    def store_later(self, sop_class: str, sop_instance: str, data: bytes | bytearray | Spool,
                    syntax: str) -> "int | Later":
        """Check, write and index one received instance: the C-STORE status when it is refused or failed,
        else what writes its row and gives the status (the file is in place, its row staged: an association
        with an asynchronous window answers several C-STOREs after one transaction).

        The file and its row are one unit: the file is written under a temporary
        name (outside the write lock: associations storing at once write at once),
        renamed into place and its row staged under the lock, the row then written by group commit
        (:meth:`Index.commit`, shared with the associations storing at once) before "stored" is said; if the
        row cannot be written the file is removed.  An instance sent again under another study or series replaces
        its old file.  So the index and the files always agree.  A spooled data set
        (already in its temporary file) is checked through a memory map and renamed.
        """
        if self.config.read_only:
            if isinstance(data, Spool):
                data.discard()
            LOGGER.warning("refused %s: this server is read-only", sop_instance)
            return 0x0124  # Refused: not authorized
        if not isinstance(data, Spool):
            row, status = self._checked_row(data, sop_class, sop_instance, syntax)
            if row is None:
                return status
            received = _with_even_fragments(data, syntax, sop_instance)
            # written to a temporary file before the lock, so that associations storing at once write their
            # files at once; under the lock only the rename and the row (what "stored" waits for)
            try:
                spool = Spool.for_instance(self.storage, sop_class, sop_instance, syntax)
            except OSError as exc:
                LOGGER.error("cannot store %s: %s", sop_instance, exc.strerror or exc)
                return 0xA700  # Refused: out of resources
            spool.write(memoryview(received))
            spool.finish()  # (a full disk may show only at the last flush)
        else:
            spool, row = data, None
        try:
            if spool.error is not None:
                LOGGER.error("cannot store %s: %s", sop_instance, spool.error)
                return 0xA700  # Refused: out of resources
            if row is None:  # spooled as it arrived: checked (and padded) through its file
                with spool.mapped() as dataset:
                    row, status = self._checked_row(dataset, sop_class, sop_instance, syntax)
                    odd = odd_fragments(dataset, syntax) if row is not None and \
                        syntax not in uids.CONVERTIBLE_SYNTAXES else []
                if row is None:
                    return status
                if odd:  # padded as an instance received in memory is (PS3.5 A.4), by a copy of the file
                    padded = spool.with_even_fragments(odd, syntax != uids.EXPLICIT_VR_BE)
                    spool.discard()
                    spool = padded
                    if spool.error is not None:
                        LOGGER.error("cannot store %s: %s", sop_instance, spool.error)
                        return 0xA700
                    _padded(sop_instance, len(odd))
            return self._keep(row, sop_instance, spool.place)
        finally:
            spool.discard()  # refused, or failed: the temporary file goes (once placed there is none)

    def _checked_row(self, dataset, sop_class: str, sop_instance: str, syntax: str) -> tuple[dict | None, int]:
        """(the index row, 0) of a data set fit to keep, or (None, the refusal status)."""
        try:
            row = index_row(dataset, syntax)  # also proves the data set whole
        except BadFile as exc:
            LOGGER.warning("refused %s: %s", sop_instance, exc)
            return None, 0xC000  # Error: cannot understand
        if not row["sop_uid"] or not row["sop_class"]:
            LOGGER.warning("refused %s: the data set has no SOP Class or SOP Instance UID", sop_instance)
            return None, 0xC000
        if (row["sop_uid"], row["sop_class"]) != (sop_instance, sop_class):
            LOGGER.warning("refused %s: the data set's SOP Class/Instance UIDs (%s, %s) are not the request's",
                           sop_instance, row["sop_class"], row["sop_uid"])
            return None, 0xA900  # Data Set does not match SOP Class
        uids = (row["study_uid"], row["series_uid"], row["sop_uid"], row["sop_class"])
        if not all(valid_uid(uid) for uid in uids):
            LOGGER.warning("refused %s: invalid UID among %r", sop_instance, uids)
            return None, 0xA900  # its identifying UIDs are not UIDs
        return row, 0x0000

    def _keep(self, row: dict, sop_instance: str, put: Callable[[str], None]) -> "int | Later":
        """Put the instance's file in place (`put(path)`) and stage its row: the status when that fails, else
        what writes the row (with every row staged) and gives the status.  File and row are one unit.

        Under `--no-overwrite` the check for an instance already kept is made under the same lock as the
        write: of several associations sending one new SOP Instance UID at once, exactly one is told
        "stored" (and that content is what is kept); the others get 0x0111.
        """
        with self._write_lock:
            earlier = self.index.path_of(sop_instance)  # (a row staged by another association counts)
            if earlier is not None and not self.config.overwrite:
                earlier = self.index.written_path_of(sop_instance)  # refused only for a row that is written
            if earlier is not None and not self.config.overwrite:
                LOGGER.warning("refused %s: already stored (--no-overwrite)", sop_instance)
                return 0x0111  # Duplicate SOP Instance
            try:
                path = self._writer.path_for(sop_instance, row["patient_id"], row["study_uid"], row["series_uid"])
                put(path)
            except (OSError, BadFile) as exc:
                LOGGER.error("cannot store %s: %s", sop_instance, exc)
                return 0xA700  # Refused: out of resources
            inside = self.storage + os.sep  # (the writer names every file inside the storage)
            row["path"] = path[len(inside):] if path.startswith(inside) else os.path.relpath(path, self.storage)
            batch = self.index.stage(row)
        return lambda: self._written(batch, sop_instance, path, earlier)

    def _written(self, batch, sop_instance: str, path: str, earlier: str | None) -> int:
        """The status of an instance whose file is in place and row staged in `batch`, once that is written."""
        try:  # outside the lock: associations storing at once share one transaction (Index.commit)
            self.index.commit(batch)
        except sqlite3.Error as exc:  # "database or disk is full" is not an OSError
            LOGGER.error("cannot index %s (%s): its file is removed", sop_instance, exc)
            if earlier is None or self.resolve(earlier) != path:
                discard(path)
            return 0xA700
        if earlier is not None and self.resolve(earlier) != path:
            discard(self.resolve(earlier))  # the same instance, now under another study or series
        return 0x0000  # said only now: the row is written

    def resolve(self, path: str) -> str:
        """An index path (relative to the storage, or absolute from older indexes) as a file path."""
        return os.path.join(self.storage, path)

    def query(self, identifier):
        """The matches of `identifier` at its level, each built only when taken (a page of answers costs its
        page); raises :class:`~dicomscu.server.index.QueryTooLong` past the deadline."""
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        return self.index.query(identifier, level)

    def matches(self, identifier):
        """(level, matches); matches is None when the query ran past its deadline."""
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        try:
            return level, list(self.query(identifier))
        except QueryTooLong as exc:
            LOGGER.warning("query stopped: %s", exc)
            return level, None

    def read_instance(self, path: str):
        """(file info, its bytes) of a stored file (an index path) proven whole first (the client's probe), or
        None when it cannot be sent: gone, cut or corrupt, which is logged, naming the file."""
        try:
            with open(self.resolve(path), "rb") as handle:
                data = handle.read()
            return probe(data), data
        except (OSError, BadFile) as exc:
            LOGGER.error("not sent: %s: %s", self.resolve(path), getattr(exc, "strerror", None) or exc)
            return None


def _with_even_fragments(data, syntax: str, sop_instance: str):
    """A received (whole, checked) data set with odd-length pixel data fragments padded before it is kept
    (PS3.5 A.4), so that it goes on as peers require; logged.  (A data set spooled to its file as it arrived,
    past 8 MiB, is padded by a copy of its file: :meth:`~dicomscu.files.spool.Spool.with_even_fragments`.)"""
    if syntax in uids.CONVERTIBLE_SYNTAXES:
        return data  # native pixel data: no fragments
    odd = odd_fragments(data, syntax)
    if not odd:
        return data
    _padded(sop_instance, len(odd))
    return even_fragments(data, odd, syntax != uids.EXPLICIT_VR_BE)


def _padded(sop_instance: str, count: int) -> None:
    LOGGER.warning("%s: %d odd-length pixel data fragment(s) padded to an even length (PS3.5 A.4)", sop_instance,
                   count)


class _Dropped:
    """Where a data set a read-only server will refuse goes as it arrives: nowhere (memory stays flat)."""

    def write(self, fragment: memoryview) -> None:
        pass

    def discard(self) -> None:
        pass


class Cancelled(Exception):
    """The peer sent a C-CANCEL-RQ for the operation under way."""


class QueryRetrieve(Provider):
    """Answers C-ECHO, C-STORE, C-FIND, C-GET and C-MOVE for one :class:`Pacs`."""

    def __init__(self, pacs: Pacs) -> None:
        super().__init__(pacs.store_later, open_sink=pacs.spool)
        self.pacs = pacs
        self.handlers.update({dimse.C_FIND_RQ: self.find, dimse.C_GET_RQ: self.get, dimse.C_MOVE_RQ: self.move,
                              dimse.N_ACTION_RQ: self.commit})

    # -- the request ----------------------------------------------------------------------------------
    def _identifier(self, channel: Channel, message: Message, field: int):
        """The request's identifier and its syntax, or None after answering the request's failure."""
        request, context = message.command, channel.context_for_id(message.context_id)
        status = None
        if context.abstract_syntax != request.AffectedSOPClassUID:
            status = 0x0122  # SOP class not supported on this context
        elif message.dataset is None:
            status = 0xC000
        if status is None and message.dataset is not None:
            try:
                return decode(message.dataset, context.transfer_syntax), context.transfer_syntax
            except Exception as exc:
                LOGGER.warning("%s: undecodable identifier: %s", channel, exc)
                status = 0xC000  # unable to process
        self._final(channel, message, field, status or 0xC000)
        return None

    def _final(self, channel: Channel, message: Message, field: int, status: int,
               counts: tuple[int | None, int, int, int] | None = None, failed_uids: Sequence[str] = ()) -> None:
        request = message.command
        if field == dimse.C_FIND_RSP:
            command = dimse.c_find_rsp(request.MessageID, request.AffectedSOPClassUID or "", status)
            channel.send_encoded(message.context_id, command, None, "C-FIND-RSP")
            return
        identifier = None
        if failed_uids:
            from pydicom.dataset import Dataset

            failed = Dataset()
            failed.FailedSOPInstanceUIDList = list(failed_uids)
            identifier = encode(failed, channel.context_for_id(message.context_id).transfer_syntax)
        command = dimse.retrieve_rsp(field, request.MessageID, request.AffectedSOPClassUID or "", status,
                                     counts or (None, 0, 0, 0), identifier is not None)
        channel.send_encoded(message.context_id, command, identifier, "response")

    @staticmethod
    def _check_cancel(channel: Channel, message_id: int) -> None:
        """Raise Cancelled if a C-CANCEL-RQ for `message_id` is waiting (a zero-wait look at the socket)."""
        while True:
            waiting = channel.poll(0)
            if waiting is None:
                return
            _cancel_or_drop(channel, waiting, message_id)

    # -- C-FIND ---------------------------------------------------------------------------------------
    def find(self, channel: Channel, message: Message) -> None:
        decoded = self._identifier(channel, message, dimse.C_FIND_RSP)
        if decoded is None:
            return
        identifier, syntax = decoded
        level = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
        if level not in LEVELS:
            return self._final(channel, message, dimse.C_FIND_RSP, 0xA900)
        request = message.command
        pending = dimse.c_find_rsp(request.MessageID, request.AffectedSOPClassUID, 0xFF00, has_identifier=True)
        # streamed from the query's cursor: each answer is built and sent as its row is read, so memory stays
        # flat in the number of answers, and a C-CANCEL stops the query itself (its cursor closed), not only
        # the responses
        with contextlib.closing(self.pacs.query(identifier)) as found:
            try:
                for match in found:
                    self._check_cancel(channel, request.MessageID)
                    channel.send_encoded(message.context_id, pending, encode(match.identifier, syntax), "C-FIND-RSP")
            except Cancelled:
                return self._final(channel, message, dimse.C_FIND_RSP, 0xFE00)
            except QueryTooLong as exc:
                LOGGER.warning("query stopped: %s", exc)
                return self._final(channel, message, dimse.C_FIND_RSP, 0xA700)  # out of resources
        self._final(channel, message, dimse.C_FIND_RSP, 0x0000)

    # -- Storage Commitment --------------------------------------------------------------------------
    def commit(self, channel: Channel, message: Message) -> None:
        """N-ACTION (Storage Commitment Push Model): :mod:`dicomscu.server.commitment`."""
        from dicomscu.server.commitment import answer_action

        answer_action(self.pacs, channel, message)

    # -- C-GET and C-MOVE -----------------------------------------------------------------------------
    def get(self, channel: Channel, message: Message) -> None:
        rows = self._rows(channel, message, dimse.C_GET_RSP)
        if rows is not None:
            self._retrieve(channel, message, dimse.C_GET_RSP, [row["path"] for row in rows], channel,
                           originator=None)

    def move(self, channel: Channel, message: Message) -> None:
        request = message.command
        destination = self.pacs.config.destinations.get((request.MoveDestination or "").strip())
        if destination is None:
            LOGGER.warning("%s: C-MOVE to unknown destination %r", channel, request.MoveDestination)
            return self._final(channel, message, dimse.C_MOVE_RSP, 0xA801)
        rows = self._rows(channel, message, dimse.C_MOVE_RSP)
        if rows is None:
            return
        paths = [row["path"] for row in rows]
        peer = Peer(destination[0], destination[1], called_ae=request.MoveDestination.strip(),
                    calling_ae=self.pacs.config.aetitle)
        try:
            with associate(peer, _contexts_for(rows)) as target:
                self._retrieve(channel, message, dimse.C_MOVE_RSP, paths, target,
                               originator=(channel.name.split("@")[0], request.MessageID))
        except DicomscuError as exc:
            if not channel.active:
                raise
            LOGGER.error("C-MOVE to %s failed: %s", request.MoveDestination, exc)
            self._final(channel, message, dimse.C_MOVE_RSP, 0xA702, (0, 0, len(paths), 0))

    def _rows(self, channel: Channel, message: Message, field: int) -> list[dict[str, str]] | None:
        """The index rows of the instances the request selects, or None after answering its failure."""
        decoded = self._identifier(channel, message, field)
        if decoded is None:
            return None
        _, found = self.pacs.matches(decoded[0])
        if found is None:
            self._final(channel, message, field, 0xA701)  # out of resources: unable to calculate the matches
            return None
        return [row for match in found for row in match.instances(_RETRIEVED)]

    def _retrieve(self, channel: Channel, message: Message, field: int, paths: list[str], target: Channel,
                  originator) -> None:
        """Send each instance over `target` (C-STORE sub-operations), a pending response after each on
        `channel`; the final status says how it went (PS3.4 C.4.2.3, C.4.3.3)."""
        request = message.command
        completed = failed = warning = 0
        failed_uids: list[str] = []
        try:
            for number, path in enumerate(paths):
                self._check_cancel(channel, request.MessageID)
                status, uid, cancel = self._send(target, path, originator, target is channel, request.MessageID)
                if status == 0x0000:
                    completed += 1
                elif status & 0xF000 == 0xB000:
                    warning += 1
                else:
                    failed += 1
                    failed_uids.append(uid)
                if cancel:
                    raise Cancelled()
                if number + 1 < len(paths):
                    counts = (len(paths) - number - 1, completed, failed, warning)
                    command = dimse.retrieve_rsp(field, request.MessageID, request.AffectedSOPClassUID, 0xFF00,
                                                 counts)
                    channel.send_encoded(message.context_id, command, None, "pending response")
        except Cancelled:
            remaining = len(paths) - completed - failed - warning
            return self._final(channel, message, field, 0xFE00, (remaining, completed, failed, warning), failed_uids)
        status = 0x0000 if not failed and not warning else 0xB000
        self._final(channel, message, field, status, (None, completed, failed, warning), failed_uids)

    def _send(self, target: Channel, path: str, originator, over_request: bool, retrieve_id: int):
        """(C-STORE status, SOP Instance UID, a C-CANCEL came meanwhile) of one sub-operation.

        A file that cannot go is one failure, logged.  With `over_request` (C-GET) the
        sub-operation shares the association of the request, whose C-CANCEL may arrive
        before the C-STORE-RSP: it takes effect after this sub-operation.
        """
        stored = self.pacs.read_instance(path)
        if stored is None:
            return 0xA702, os.path.splitext(os.path.basename(path))[0], False
        info, data = stored
        try:
            context, payload = _payload_for(target, info, data, need_scp_role=over_request)
        except Exception as exc:  # pixel data a decoder refuses: this sub-operation fails, the others go on
            LOGGER.error("not sent: %s: cannot convert it from %s: %s: %s", path, info.transfer_syntax,
                         type(exc).__name__, exc)
            return 0xA702, info.sop_instance, False
        if context is None:
            LOGGER.error("not sent: %s: the peer accepted no context for %s in %s", path, info.sop_class,
                         info.transfer_syntax)
            return 0xA702, info.sop_instance, False
        message_id = target.next_message_id()
        target.send_encoded(context.context_id, dimse.c_store_rq(message_id, info.sop_class, info.sop_instance,
                                                                 move_originator=originator), payload, "C-STORE")
        cancelled = False
        while True:
            answer = target.receive_any("C-STORE")
            command = answer.command
            if command.CommandField == dimse.C_STORE_RSP and command.MessageIDBeingRespondedTo == message_id:
                return command.Status, info.sop_instance, cancelled
            if over_request and _is_cancel(answer, retrieve_id):
                cancelled = True
            else:
                LOGGER.warning("%s: unexpected %s during a C-STORE: ignored", target, command.name)


def _is_cancel(message: Message, message_id: int) -> bool:
    command = message.command
    return command.CommandField == dimse.C_CANCEL_RQ and command.MessageIDBeingRespondedTo == message_id


def _cancel_or_drop(channel: Channel, message: Message, message_id: int) -> None:
    """A C-CANCEL-RQ for `message_id` raises Cancelled; anything else, while an operation runs, is logged
    and dropped (we negotiate no asynchronous operations)."""
    if _is_cancel(message, message_id):
        raise Cancelled()
    LOGGER.warning("%s: %s while an operation runs: ignored", channel, message.command.name)


def _payload_for(target: Channel, info, data: bytes, need_scp_role: bool):
    """(accepted context, data set bytes) for sending a stored file by the one rule
    (:mod:`dicomscu.files.sending`); (None, None) when no accepted context can carry it."""
    if need_scp_role and not target.roles.get(info.sop_class, (True, False))[1]:
        return None, None  # C-GET: the requestor did not take the storage SCP role for this class
    syntax = syntax_to_send(info.transfer_syntax, offered_to(info, target.context_for))
    if syntax is None:
        return None, None
    if syntax == info.transfer_syntax and info.odd_fragments:
        _padded(info.sop_instance, len(info.odd_fragments))
    return target.context_for(info.sop_class, syntax), payload(data, info, syntax)


#: The file in the storage a running serve holds locked (and writes its process ID in).
LOCK_NAME = ".dicomscu-serve.lock"
#: Left in the storage by a serve that stopped cleanly (its index closed after every store ended), removed by
#: the next start before it serves: a start that does not find it (the first one, or after a kill or a power
#: cut) walks the storage for what a kill can leave (temporary files, files without a row); one that finds it
#: reads only the storage's top folder, where every temporary file is made.  Start-up then costs the same
#: whatever the archive's size.
CLEAN_NAME = ".dicomscu-stopped-cleanly"


def _mark_clean(storage: str) -> None:
    """Say, durably, that the storage's files and index agree (after a clean stop)."""
    path = os.path.join(storage, CLEAN_NAME)
    try:
        with open(path, "w") as handle:
            handle.write("files and index agree: the next start does not walk the storage\n")
            handle.flush()
            os.fsync(handle.fileno())
        fsync(storage)
    except OSError as exc:  # the next start walks the storage: slower, as safe
        LOGGER.warning("cannot mark the storage as stopped cleanly: %s", exc.strerror or exc)


def _stopped_cleanly(storage: str) -> bool:
    """Whether the last serve stopped cleanly; the mark is removed (durably) either way, before serving."""
    path = os.path.join(storage, CLEAN_NAME)
    if not os.path.exists(path):
        return False
    os.unlink(path)
    fsync(storage)  # a kill from now on leaves no mark: the next start walks
    return True


def _open_storage(storage: str, given: str):
    """(the storage's lock, its index): the directory checked usable (writable, not in use by another serve),
    the temporary files a kill left removed, the complete files a kill left without a row adopted; or a usage
    error naming it."""
    if os.path.exists(storage) and not os.path.isdir(storage):
        raise UsageError(f"{given}: not a directory", option="storage")
    problem = None
    lock = None
    try:
        os.makedirs(storage, exist_ok=True)
        lock = _lock_storage(storage, given)
        clean = _stopped_cleanly(storage)
        for path in remove_partial_files(storage, top_only=clean):  # left by a kill -9: never a whole instance
            LOGGER.warning("removed the partial file %s", path)
        probe = os.path.join(storage, ".dicomscu-write-check")
        with open(probe, "wb"):
            pass
        os.unlink(probe)
        index = Index(os.path.join(storage, "index.sqlite"))
        adopted = index.adopt(storage) if not clean else Reindexed()
        if adopted.indexed or adopted.dropped:
            LOGGER.warning("indexed %d complete file(s) that had no index row (left by a stop during a store)%s",
                           adopted.indexed, f"; removed {len(adopted.dropped)} older duplicate(s)"
                           if adopted.dropped else "")
        for unreadable in adopted.unreadable:
            LOGGER.warning("not indexed (left in place): %s", unreadable)
        return lock, index
    except OSError as exc:
        problem = exc.strerror or str(exc)
    except sqlite3.Error as exc:
        problem = f"cannot open its index {os.path.join(storage, 'index.sqlite')}: {exc}"
    except BaseException:
        if lock is not None:
            lock.close()
        raise
    if lock is not None:
        lock.close()
    raise UsageError(f"{given}: {problem}", option="storage")


def _lock_storage(storage: str, given: str):
    """An open file holding the storage's exclusive lock (released when closed, or when the process ends, however
    it ends), or a usage error naming the process that holds it: two serves on one storage would each remove
    the other's files in progress and overwrite each other's index rows."""
    import fcntl

    handle = open(os.path.join(storage, LOCK_NAME), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UsageError(f"{given}: in use by another dicomscu serve ({holder}); stop it, or give another "
                         "--storage", option="storage") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {os.uname().nodename}\n")
    handle.flush()
    return handle


#: What a C-GET or C-MOVE needs of each instance it sends: its file, and what its presentation context needs.
_RETRIEVED = ("path", "sop_class", "transfer_syntax")


def _contexts_for(rows) -> list[Proposal]:
    """(SOP Class, [its transfer syntax, Implicit VR LE]) for the instances in `rows`, at most 128."""
    pairs = sorted({(row["sop_class"], row["transfer_syntax"]) for row in rows})
    contexts = []
    for sop_class, syntax in pairs:
        syntaxes = [syntax] if syntax == uids.IMPLICIT_VR_LE else [syntax, uids.IMPLICIT_VR_LE]
        contexts.append(Proposal(sop_class, syntaxes))
    if len(contexts) > 128:
        LOGGER.warning("C-MOVE needs %d presentation contexts; proposing the first 128", len(contexts))
    return contexts[:128] or [Proposal(uids.SECONDARY_CAPTURE, [uids.IMPLICIT_VR_LE])]
