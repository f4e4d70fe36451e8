"""``-j N``: one share of the work per association, each in its own thread.

Store splits files by bytes, C-GET and C-MOVE split identifiers by series; each
then runs the ordinary one-association sequence on its share.  Running them is
the same for all three, hence here: inline when there is one share, in threads
otherwise, every thread joined, and the first failure re-raised in the caller.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence, TypeVar

Share = TypeVar("Share")


def fan_out(run: Callable[[Share], None], shares: Sequence[Share], name: str = "share") -> None:
    """run(share) for each of `shares`, concurrently; raises the first exception any of them raised."""
    if len(shares) == 1:
        run(shares[0])
        return
    failures: list[BaseException] = []

    def guarded(share: Share) -> None:
        try:
            run(share)
        except BaseException as exc:  # re-raised below, in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(share,), name=f"{name}-{i}") for i, share in enumerate(shares)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
