"""What a cluster's workers tell the client while a share runs: Dask events, batched, taken in once.

A share is a Dask task whose return value comes only when it is over, and a share can
run for minutes.  So a worker also publishes what it has done so far
(:class:`Publisher`: each item under a key, the latest item per key sent as a batch at
most every :data:`TICK` seconds, since an event per file would cost the scheduler more
than the C-STORE), and the client takes the events in on its own thread
(:class:`ShareEvents`): stored files to report at once (:class:`FileStream`), a
retrieval's counts per series for the progress bar (:class:`RetrievalProgress`).  A
share may run more than once (a try dies with its worker), and events may arrive after
the share's result: a share's events are taken until its result is in, then dropped,
and what a try reports is merged with what earlier tries did, never counted twice.

The topic is the client's id (:func:`topic_of`): the scheduler keeps the last events of
each topic (1,000 by default) and forgets those of a client's own topic once the client
has gone, so a long-lived scheduler does not keep every run's results.  Dask logs a few
events of its own there; ours are tagged (:data:`TAG`).
"""

from __future__ import annotations

import pickle
import queue
import threading
from typing import Any, Callable

from dicomscu.operations.results import OK, FileResult

#: Seconds between two batches of a share's events, and between two looks at them on the client.
TICK = 0.2
#: The first item of our events (the client's topic carries some of Dask's too).
TAG = "dicomscu"


def topic_of(client) -> str:
    """The topic a run's events go under: its client's id (see the module doc)."""
    return str(client.id)


class Publisher:
    """On a worker: share `n`'s items sent to the client as Dask events under `topic` (no topic: nothing sent),
    the latest item per ``key(item)`` in a batch at most every :data:`TICK` seconds."""

    def __init__(self, topic: str | None, n: int, key: Callable[[Any], Any]) -> None:
        self.topic, self.n, self.key = topic, n, key
        self.batch: dict[Any, Any] = {}
        self.lock = threading.Lock()
        if topic is not None:
            from distributed import get_worker

            self.worker = get_worker()

    def __call__(self, item: Any) -> None:
        if self.topic is None:
            return
        with self.lock:
            due = bool(self.batch)  # a send is timed already
            self.batch[self.key(item)] = item
        if not due:
            timer = threading.Timer(TICK, self.send)
            timer.daemon = True
            timer.start()

    def send(self) -> None:
        with self.lock:
            batch, self.batch = list(self.batch.values()), {}
            blob = pickle.dumps(batch)  # (pickled: a result holds a Status; under the lock: items stay still)
        assert self.topic is not None  # (sends are only timed with a topic)
        self.worker.log_event(self.topic, [TAG, self.n, blob])


class ShareEvents:
    """On the client: the items the workers publish under `topic`, handed to :meth:`take` on the caller's
    thread (:meth:`drain`) until the share they belong to is over (:meth:`over`)."""

    def __init__(self, client, topic: str) -> None:
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.ended: set[int] = set()
        client.subscribe_topic(topic, lambda event: self.events.put(event[1]))  # (on Dask's thread)

    def take(self, n: int, item: Any) -> None:
        raise NotImplementedError

    def drain(self) -> bool:
        """Take what has arrived; whether anything had."""
        taken = False
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                return taken
            if not (isinstance(event, (list, tuple)) and len(event) == 3 and event[0] == TAG):
                continue  # one of Dask's own
            _, n, blob = event
            if n not in self.ended:
                for item in pickle.loads(blob):
                    self.take(n, item)
                taken = True

    def over(self, n: int) -> None:
        """Share `n`'s result is in: later events of it are dropped (the result covers them)."""
        self.ended.add(n)


class FileStream(ShareEvents):
    """A store's per-file results, each file reported once.

    A stored file's result is final (the peer confirmed it) and is reported as it arrives; the rest (a
    refusal, an unreadable file) only with the result list of the share's try that finished, since a try
    that dies with its worker is run again and the outcome may change.  Files a share's earlier tries
    reported are not reported again.  Memory: the paths of the shares under way.
    """

    def __init__(self, client, topic: str, emit: Callable[[FileResult], None]) -> None:
        super().__init__(client, topic)
        self.emit = emit
        self.reported: dict[int, set[str]] = {}

    def take(self, n: int, result: FileResult) -> None:
        paths = self.reported.setdefault(n, set())
        if result.path not in paths:
            paths.add(result.path)
            self.emit(result)

    def finish(self, n: int, results: list[FileResult]) -> None:
        """Share `n` is over: its last try's `results` (none if every try failed) complete what was streamed."""
        self.drain()
        for result in results:
            self.take(n, result)
        self.reported.pop(n, None)
        self.over(n)


    def recover(self, n: int, stored: list[tuple[str, str]]) -> None:
        """The scheduler is gone with share `n` unfinished: each file its journal records ((SOP Instance UID,
        path)) and no event told is reported stored, so that the summary counts what the peer confirmed."""
        if n in self.ended:
            return
        self.drain()
        for uid, path in stored:
            self.take(n, FileResult(path, OK, "stored (from the share's journal: the Dask scheduler was lost "
                                              "before the result came back)", sop_instance=uid))


class RetrievalProgress(ShareEvents):
    """A cluster retrieval's running totals: the finished shares' reports, and for each share under way the
    latest report of each of its series (a series a try that died had begun is replaced by the next try's)."""

    def __init__(self, client, topic: str, combine: Callable[[list], Any]) -> None:
        super().__init__(client, topic)
        self.combine = combine
        self.finished = combine([])  # the finished shares' reports, summed as they come (a run may have many)
        self.series: dict[int, dict[str, Any]] = {}

    def take(self, n: int, item: tuple[str, Any]) -> None:
        uid, report = item
        self.series.setdefault(n, {})[uid] = report

    def finish(self, n: int, part) -> None:
        """Share `n` is over with `part` (None if every try failed: what it streamed stays counted)."""
        self.drain()
        if part is not None:
            self.finished = self.combine([self.finished, part])
            self.series.pop(n, None)
        self.over(n)

    def total(self):
        under_way = (report for series in self.series.values() for report in series.values())
        return self.combine([self.finished, *under_way])
