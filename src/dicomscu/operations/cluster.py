"""``--cluster tcp://SCHEDULER:8786``: bulk store, C-GET and C-MOVE run as tasks on a Dask cluster.

Retrieval (``--get``, ``--move --move-dest AE``, ``--find ... --then``, ``--from-json``):
the client finds the series the identifiers select, and each share of series is a task
that runs the ordinary C-GET (into the output folder, storage the workers share) or
C-MOVE (to the third application named; the workers cannot all be one destination the
PACS knows) series by series, journaling each series once its final response came.  A
share run again after a worker loss skips the series its journal holds, so only the
series in flight is retrieved twice, and C-GET rewrites the same files atomically: each
instance is one file whatever happens.  The rest of this docstring is about store.

Store: a bulk store run as tasks, the journal keeping count.

The files are split into shares of about :data:`SHARE_FILES` files or
:data:`SHARE_BYTES` bytes; each share is a Dask task that runs the ordinary store
(``-j`` associations) on a worker and returns its per-file results; each stored
file's result also comes back as a Dask event as soon as the peer confirms it, so
the client reports it then (:mod:`~dicomscu.operations.share_events`: each file
once).  Nothing lost, nothing twice:

* each share records every instance its peer confirmed in a journal of its own
  (SQLite: one writer each, so no locking across machines), beside the user's
  ``--journal`` (shared storage when the workers are on other machines) or in a
  temporary folder of the client's machine;
* a task whose worker dies is run again by Dask on another worker (and one that
  fails is submitted again, up to :data:`RETRIES` times after a growing delay),
  and skips what its journal, or the user's, already holds; only the file in
  flight when the worker died can be sent twice, and C-STORE of the same instance
  is idempotent;
* at the end the share journals are merged into the user's journal.

``max_per_peer`` caps the associations open to the peer across the whole cluster
with a Dask semaphore (each task takes one lease per association it opens).
Ctrl-C cancels every task.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
from concurrent.futures import CancelledError
from contextlib import closing, contextmanager
from typing import Any, Callable, Generator, Iterator, NamedTuple, Sequence

from dicomscu.errors import AssociationAborted, ConnectionFailed, DicomscuError, UsageError
from dicomscu.files.inputs import InputProblem, expand
from dicomscu.files.instances import remove_partial_files
from dicomscu.files.journal import Journal
from dicomscu.operations.options import StoreOptions, given
from dicomscu.operations.retrieval import COUNTS, LISTS, RetrieveOptions
from dicomscu.operations.results import ALREADY, OK, SKIPPED, WARNED, FileResult, StoreReport, recorder
from dicomscu.operations.share_events import TICK, FileStream, Publisher, RetrievalProgress, topic_of
from dicomscu.operations.status import Status
from dicomscu.transport.peer import Peer

SHARE_FILES = 200
SHARE_BYTES = 256 << 20
#: Series per retrieval share at most: the end of a long run stays balanced however few the workers.
SHARE_SERIES = 100
RETRIES = 2
#: Seconds before a failed share runs again; doubled for each further try.
BACKOFF = 2.0
#: Seconds with no worker connected before a run gives up (its tasks would wait for one forever), and
#: seconds between two looks at the workers.
NO_WORKERS = 60.0
WORKER_CHECK = 5.0
#: Outcomes a worker streams back as they come: final, whatever happens to the rest of the share.
STORED = (OK, WARNED, ALREADY)
LOGGER = logging.getLogger("dicomscu")


class _Layered:
    """A journal that reads the user's and a share's, and writes the share's."""

    def __init__(self, share: Journal, earlier: Journal | None) -> None:
        self.share, self.earlier = share, earlier

    def __contains__(self, uid: str) -> bool:
        return uid in self.share or (self.earlier is not None and uid in self.earlier)

    def record(self, uid: str, path: str, peer: str) -> None:
        self.share.record(uid, path, peer)


def _client(scheduler: str, peer: Peer):
    """A Dask client of the scheduler at `scheduler`, or a usage error saying why not."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("needs Dask: pip install 'dicomscu[cluster]'", option="cluster") from None
    if not LOGGER.isEnabledFor(logging.DEBUG):  # Dask logs a lost scheduler with tracebacks: we say it in a line
        for name in list(logging.root.manager.loggerDict):  # (its loggers have levels and handlers of their own)
            if name == "distributed" or name.startswith("distributed."):
                logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    try:
        return Client(scheduler, timeout=f"{peer.timeouts.connect:g}s")
    except OSError as exc:
        raise UsageError(f"{scheduler}: no Dask scheduler answers there ({exc})", option="cluster") from None


def _lost(address: str, finished: int, total: int) -> ConnectionFailed:
    return ConnectionFailed(f"{address}: the connection to the Dask scheduler was lost mid-run ({finished} of "
                            f"{total} share(s) done): start the scheduler and its workers again and run the command "
                            f"again (with --journal a store skips what was stored, with --skip-existing a C-GET "
                            f"what was written)")


def _workers(client) -> int:
    return len(client.scheduler_info().get("workers", {}))


class PeerLimit(NamedTuple):
    """A cluster-wide cap on the associations open to one peer: a Dask semaphore of `leases` leases,
    registered by whichever task takes one first (with the same count, or Dask refuses it)."""

    name: str
    leases: int


def _peer_limit(peer: Peer, max_per_peer: int | None) -> PeerLimit | None:
    if max_per_peer is None:
        return None
    return PeerLimit(f"dicomscu:{peer.host}:{peer.port}:{max_per_peer}", max_per_peer)


def _cap(jobs: int, max_per_peer: int | None) -> int:
    """Associations per task: never more than the cluster-wide cap (a task could never get its leases)."""
    return min(jobs, max_per_peer) if max_per_peer is not None else jobs


@contextmanager
def _leases(limit: PeerLimit | None, count: int) -> Iterator[None]:
    """`count` leases of the peer's semaphore (one per association a task opens, at most the cap: see
    :func:`_cap`) while the block runs."""
    if limit is None:
        yield
        return
    from distributed import Lock, Semaphore

    semaphore = Semaphore(max_leases=limit.leases, name=limit.name)
    taken = 0
    try:
        with Lock(f"{limit.name}:taking"):  # all of a task's leases at once: two tasks each holding some
            for _ in range(count):          # and waiting for more would wait forever
                semaphore.acquire()
                taken += 1
        yield
    finally:
        for _ in range(taken):
            semaphore.release()


def store_share(peer: Peer, files: list[str], jobs: int, share_journal: str, journal: str | None,
                limit: PeerLimit | None, topic: str | None = None, n: int = 0) -> list[FileResult]:
    """One share, on a worker: the ordinary store, results returned (runs again after a worker loss), and
    each stored file's result published under `topic` as it comes (see
    :class:`~dicomscu.operations.share_events.FileStream`)."""
    from dicomscu.operations.store import store

    results: list[FileResult] = []
    os.makedirs(os.path.dirname(share_journal), exist_ok=True)  # (a worker that does not see the client's disk)
    layered = _Layered(Journal(share_journal), Journal(journal, peer=str(peer)) if journal and os.path.exists(journal) else None)
    publish = Publisher(topic, n, key=lambda result: result.path)

    def on_result(result: FileResult) -> None:
        result = _stored_by_an_earlier_try(result, layered)
        results.append(result)
        if result.outcome in STORED:
            publish(result)

    with _leases(limit, jobs):
        report = store(peer, files, on_result=on_result, jobs=jobs, journal=layered)
    if report.not_sent:  # the association failed: the task fails, and Dask runs it again (journal: no repeats)
        raise report.error or AssociationAborted(f"{peer}: {report.not_sent} file(s) not sent")
    return results


def _stored_by_an_earlier_try(result: FileResult, layered: _Layered) -> FileResult:
    """A file the share's own journal holds was stored in this run, by a try of the share that died with its
    worker (its results never came back): stored, not "already stored" as the user's journal would say."""
    if result.outcome != ALREADY or result.sop_instance not in layered.share or (
            layered.earlier is not None and result.sop_instance in layered.earlier):
        return result
    try:
        size = os.path.getsize(result.path)
    except OSError:
        size = 0
    return FileResult(result.path, OK, "", sop_instance=result.sop_instance, size=size)


def _share_size(count: int, workers: int, cap: int | None = None) -> int:
    """Items per share: at least four shares per worker (work stays balanced, a lost share is a small loss),
    at most `cap` items each."""
    size = max(1, -(-count // (4 * max(workers, 1))))
    return min(size, cap) if cap is not None else size


def _each_share(client, function: Callable, shares: list, arguments: Callable[[int, list], tuple],
                tick: Callable[[], object] | None = None) -> Generator[tuple[int, Any, Exception | None], None, None]:
    """(n, result, None) or (n, None, error) of ``function(*arguments(n, share))`` run as a Dask task per share
    `n`, as they finish; `tick` is called at least every :data:`TICK` seconds meanwhile.  A share that
    fails is submitted again up to :data:`RETRIES` times, :data:`BACKOFF` seconds
    later, then twice that (a busy or restarting PACS gets time; no worker waits meanwhile); one whose worker
    died is run again by Dask itself.  On any exception, Ctrl-C included, the tasks not done are cancelled;
    the client is closed at the end."""
    import heapq

    from distributed import wait

    run = time.time_ns()
    address = str(getattr(client.scheduler, "address", None) or "the Dask scheduler")
    finished = 0
    looked, workerless_since = time.monotonic(), None

    def look_for_workers() -> None:
        """Every WORKER_CHECK seconds; after NO_WORKERS seconds without any, the run ends (else it would wait)."""
        nonlocal looked, workerless_since
        now = time.monotonic()
        if now - looked < WORKER_CHECK:
            return
        looked = now
        try:
            workers = client.nthreads()
        except Exception:  # (a lost scheduler is told by the futures' cancellation)
            return
        if workers:
            workerless_since = None
        elif workerless_since is None:
            workerless_since = now
        elif now - workerless_since >= NO_WORKERS:
            raise ConnectionFailed(f"{address}: no Dask worker has been connected for {NO_WORKERS:g} s "
                                   f"({finished} of {len(shares)} share(s) done): start workers (dask worker "
                                   f"{address}) and run the command again")

    every: list = []  # each future submitted (to cancel)
    tries: dict[str, tuple[int, int]] = {}  # task key -> (share, try)
    pending: set = set()
    later: list[tuple[float, int, int]] = []  # (when, share, try) of the shares backing off

    def submit(n: int, attempt: int) -> None:
        key = f"dicomscu-{function.__name__}-{run}-{n}-{attempt}"
        future = client.submit(function, *arguments(n, shares[n]), pure=False, key=key)
        every.append(future)
        pending.add(future)
        tries[key] = (n, attempt)

    try:
        for n in range(len(shares)):
            submit(n, 0)
        while pending or later:
            while later and later[0][0] <= time.monotonic():
                _, n, attempt = heapq.heappop(later)
                submit(n, attempt)
            if tick is not None:
                tick()
            look_for_workers()
            wake = min([WORKER_CHECK, *([TICK] if tick is not None else []),
                        *([later[0][0] - time.monotonic()] if later else [])])
            if not pending:
                time.sleep(max(0.0, wake))
                continue
            try:
                done, _ = wait(list(pending), return_when="FIRST_COMPLETED", timeout=max(0.01, wake))
            except TimeoutError:
                continue  # a share's time to run again, or to report, came first
            except CancelledError:  # (Dask cancels every future when the scheduler goes away)
                raise _lost(address, finished, len(shares)) from None
            for future in done:
                pending.discard(future)
                n, attempt = tries[future.key]
                outcome: tuple[int, Any, Exception | None]
                try:
                    outcome = n, future.result(), None
                except CancelledError:
                    raise _lost(address, finished, len(shares)) from None
                except Exception as exc:
                    if attempt < RETRIES and not isinstance(exc, UsageError):
                        delay = BACKOFF * 2 ** attempt
                        LOGGER.warning("a share failed on the cluster (%s): it runs again in %g s", exc, delay)
                        heapq.heappush(later, (time.monotonic() + delay, n, attempt + 1))
                        continue
                    outcome = n, None, exc  # the share failed on every try
                finished += 1
                yield outcome
    except BaseException:
        client.cancel(every)
        raise
    finally:
        client.close()


def _shares(paths: Sequence[str], recursive: bool, emit, workers: int) -> list[list[str]]:
    """The files in shares: at most SHARE_FILES or SHARE_BYTES each, and at least four per worker (so that
    work stays balanced and a lost share is a small loss)."""
    sized: list[tuple[str, int]] = []
    for entry in expand(paths, recursive):
        if isinstance(entry, InputProblem):
            emit(FileResult(entry.path, SKIPPED, entry.reason))
            continue
        try:
            sized.append((entry, os.stat(entry).st_size))
        except OSError as exc:
            emit(FileResult(entry, SKIPPED, f"cannot read: {exc.strerror or exc}"))
    most = _share_size(len(sized), workers, SHARE_FILES)
    shares: list[list[str]] = [[]]
    size = 0
    for entry, length in sized:
        if shares[-1] and (len(shares[-1]) >= most or size + length > SHARE_BYTES):
            shares.append([])
            size = 0
        shares[-1].append(entry)
        size += length
    return [share for share in shares if share]


def store_on_cluster(peer: Peer, paths: Sequence[str], options: StoreOptions | None = None, *, scheduler: str,
                     on_result: Callable[[FileResult], object] | None = None, recursive: bool | None = None,
                     jobs: int | None = None, journal: str | None = None,
                     max_per_peer: int | None = None) -> StoreReport:
    """Store `paths` to `peer` from the workers of the Dask cluster at `scheduler`, as `options` (or the
    keywords) say: each worker over ``jobs`` associations, the journal at the path ``journal`` (storage the
    workers share)."""
    options = given(options, StoreOptions, recursive=recursive, jobs=jobs, journal=journal)
    if options.commit:
        from dicomscu.operations.target import COMMIT_ON_CLUSTER

        raise UsageError(COMMIT_ON_CLUSTER, option="cluster")
    if options.journal is not None and not isinstance(options.journal, (str, os.PathLike)):
        raise UsageError(f"{options.journal!r}: on a cluster, give the path of a journal the workers share",
                         option="journal")
    journal = os.fspath(options.journal) if options.journal is not None else None
    recursive, jobs = options.recursive, options.jobs
    started = time.perf_counter()
    if journal:
        Journal(journal, peer=str(peer)).close()  # another peer's journal is refused before anything runs
    report = StoreReport(peer)
    emit = recorder(report, None, on_result)  # the workers journal; merged below
    client = _client(scheduler, peer)
    shares = _shares(paths, recursive, emit, _workers(client))
    unshared = sum(report.counts.values())  # inputs reported before sharing (unreadable ones)
    folder = f"{journal}.shares" if journal else tempfile.mkdtemp(prefix="dicomscu-shares-")
    os.makedirs(folder, exist_ok=True)
    limit = _peer_limit(peer, max_per_peer)
    jobs = _cap(jobs, max_per_peer)

    topic = topic_of(client)
    stream = FileStream(client, topic, emit)

    def arguments(n: int, share: list) -> tuple:
        return peer, share, jobs, os.path.join(folder, f"share-{n:06d}.sqlite"), journal, limit, topic, n

    try:
        with closing(_each_share(client, store_share, shares, arguments, stream.drain)) as outcomes:
            for n, results, error in outcomes:
                if error is not None:
                    report.error = report.error or (error if isinstance(error, DicomscuError) else
                                                    AssociationAborted(f"a share failed on the cluster: {error}"))
                stream.finish(n, results or [])
    except ConnectionFailed as exc:  # the scheduler went away: what was stored is reported, and journaled
        report.error = exc
        for n in range(len(shares)):  # what the workers stored and could not tell: their share journals say
            stream.recover(n, _stored_in(os.path.join(folder, f"share-{n:06d}.sqlite")))
    # files of a share that failed on every try, or that never ran, and that no result covers: not sent
    report.not_sent = sum(map(len, shares)) - (sum(report.counts.values()) - unshared)
    _merge(folder, journal, str(peer))
    if not journal:
        shutil.rmtree(folder, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _stored_in(share_journal: str) -> list[tuple[str, str]]:
    """(SOP Instance UID, path) of each file a share's journal records as stored (none if it has no journal)."""
    if not os.path.exists(share_journal):
        return []
    try:
        with closing(sqlite3.connect(share_journal, timeout=5)) as share:
            return list(share.execute("SELECT sop_instance_uid, path FROM stored"))
    except sqlite3.Error as exc:
        LOGGER.warning("%s: cannot read what this share stored: %s", share_journal, exc)
        return []


def _merge(folder: str, journal: str | None, peer: str) -> None:
    """The share journals into the user's (once every share is done)."""
    if not journal:
        return
    target = Journal(journal, peer=peer)
    for name in sorted(os.listdir(folder)):
        if name.endswith(".sqlite"):
            with sqlite3.connect(os.path.join(folder, name)) as share:
                for uid, path in share.execute("SELECT sop_instance_uid, path FROM stored"):
                    target.record(uid, path, peer)
    target.close()
    shutil.rmtree(folder, ignore_errors=True)


class SeriesJournal:
    """A retrieval share's series whose final response came, each with the counts of its retrieval (SQLite,
    one writer: the share's task): a try run again after a worker loss skips those series, and counts them."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)  # (a worker that does not see the client's disk)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS series (uid TEXT PRIMARY KEY, report TEXT)")
        self._lock = threading.Lock()

    def done(self, blank: Callable[[], Any]) -> dict[str, Any]:
        """Each series journaled, with its counts in a report from `blank()`."""
        found = {}
        for uid, text in self._db.execute("SELECT uid, report FROM series"):
            counts, report = json.loads(text), blank()
            for name in (*COUNTS, *LISTS):
                setattr(report, name, counts[name])
            if counts["status"] is not None:
                report.status = Status(*counts["status"])
            found[uid] = report
        return found

    def record(self, uid: str, report) -> None:
        counts = {name: getattr(report, name) for name in (*COUNTS, *LISTS)}
        status = report.status
        counts["status"] = None if status is None else [status.code, status.category, status.meaning]
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO series VALUES (?, ?)", (uid, json.dumps(counts)))

    def close(self) -> None:
        self._db.close()


def retrieve_share(peer: Peer, query, options, identifiers: list, jobs: int, operation: str, done_journal: str,
                   limit: PeerLimit | None, topic: str | None = None, n: int = 0):
    """One share of series, on a worker: the ordinary C-GET or C-MOVE, series by series over `jobs`
    associations, each series recorded in the share's journal once its final response says it is done, and
    its counts published under `topic` as it goes (see
    :class:`~dicomscu.operations.share_events.RetrievalProgress`).  A share run again after a worker loss
    skips the series its journal holds, counting what they did: only the series in flight when the worker
    died is retrieved twice (C-GET rewrites the same files, C-MOVE's destination gets the same instances
    again)."""
    from dicomscu.operations import retrieve
    from dicomscu.operations.fanout import fan_out

    name = f"C-{operation.upper()}"
    run = retrieve.move if operation == "move" else retrieve.get
    journal = SeriesJournal(done_journal)
    earlier = journal.done(lambda: retrieve.RetrieveReport(peer, name))
    todo = [series for series in identifiers if _series_uid(series) not in earlier]
    parts = [retrieve.RetrieveReport(peer, name) for _ in range(min(jobs, len(todo)))]
    publish = Publisher(topic, n, key=lambda item: item[0])
    one_by_one = dataclasses.replace(options, jobs=1)  # (the share's own associations are its parallelism)
    for uid, report in earlier.items():  # the client may have missed them when the earlier try died
        publish((uid, report))

    def one_association(index: int) -> None:
        for series in todo[index::len(parts)]:
            uid = _series_uid(series)
            part = run(peer, query, one_by_one, lambda report: publish((uid, dataclasses.replace(
                report, write_errors=list(report.write_errors), refused_classes=list(report.refused_classes)))),
                [series])
            journal.record(uid, part)
            publish((uid, part))
            parts[index] = retrieve.combine(peer, [parts[index], part])

    with _leases(limit, len(parts)):
        fan_out(one_association, range(len(parts)), operation)
    journal.close()
    total = retrieve.combine(peer, [*earlier.values(), *parts])
    total.operation = name
    return total


def _series_uid(series) -> str:
    """A series identifier's UID, whether a pydicom data set or a flat identifier."""
    return str(series.get("SeriesInstanceUID", ""))


def retrieve_on_cluster(peer: Peer, query, options: RetrieveOptions, identifiers: list | None, *, scheduler: str,
                        operation: str = "get", jobs: int | None = None, max_per_peer: int | None = None,
                        on_progress=None):
    """C-GET or C-MOVE what `query` (or `identifiers`) selects, series by series, on the workers at
    `scheduler`, each over ``options.jobs`` (or `jobs`) associations; C-GET into ``options.output`` (storage
    the workers share), C-MOVE to ``options.move_destination`` (the workers cannot all be one move
    destination)."""
    from dicomscu.operations import retrieve

    options = given(options, RetrieveOptions, jobs=jobs)

    if operation == "move" and options.move_destination is None:
        raise UsageError("on a cluster, C-MOVE needs a destination the server knows (--move-dest AE): the "
                         "workers cannot all listen as one move destination; or use --get", option="cluster")
    started = time.perf_counter()
    name = f"C-{operation.upper()}"
    report = retrieve.RetrieveReport(peer, name)
    if identifiers is None:
        # (--skip-existing is each share's: a worker looks for its series' instances in the shared -o)
        identifiers = retrieve.identifiers_for(peer, query, dataclasses.replace(options, skip_existing=False),
                                               report, name)
    series = [one for item in identifiers for one in retrieve.series_of(peer, query, item)]
    client = _client(scheduler, peer)
    most = _share_size(len(series), _workers(client), SHARE_SERIES)
    shares = [series[start:start + most] for start in range(0, len(series), most)]
    folder = tempfile.mkdtemp(prefix=".dicomscu-shares-", dir=options.output if operation == "get" else None)
    # The run's mark on its temporary files: a worker killed mid-write leaves one, which only this client,
    # once every share is over, knows to be nobody's.
    options = dataclasses.replace(options, tag=secrets.token_hex(6))
    limit = _peer_limit(peer, max_per_peer)
    jobs = _cap(options.jobs, max_per_peer)
    topic = topic_of(client)
    progress = RetrievalProgress(client, topic, lambda parts: retrieve.combine(peer, parts))

    def arguments(n: int, share: list) -> tuple:
        return (peer, query, options, share, jobs, operation, os.path.join(folder, f"share-{n:06d}.sqlite"),
                limit, topic, n)

    def tick() -> None:
        if progress.drain() and on_progress is not None:
            on_progress(progress.total())

    try:
        with closing(_each_share(client, retrieve_share, shares, arguments, tick)) as outcomes:
            for n, part, error in outcomes:
                if error is not None:  # counted, with what the share did
                    part = getattr(error, "report", None)
                    report.write_errors.append(f"a share failed on the cluster: {error}")
                progress.finish(n, part)
                if on_progress is not None:
                    on_progress(progress.total())
        if operation == "get":
            remove_partial_files(options.output, options.tag)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    total = progress.total()
    total.operation = name
    total.write_errors += report.write_errors
    total.seconds = time.perf_counter() - started
    return total
