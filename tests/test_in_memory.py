"""Every operation of the public API against serve's provider over a socket pair: no port, no process.

The provider runs on the far end of a :func:`socket.socketpair` through the same accepting code a listening
serve runs (:mod:`dicomscu.transport.memory`); the operations are the public functions, unchanged.  What
these tests cover used to need a server on a port; here each costs milliseconds and cannot collide with
another test's port.
"""

from __future__ import annotations

import threading
import time

import pytest

import dicomscu
from dicomscu.errors import AssociationAborted, ConnectionFailed, PeerTimeout
from dicomscu.server.pacs import Pacs, QueryRetrieve, ServerConfig, accept_policy
from dicomscu.transport.listener import AcceptPolicy
from dicomscu.transport.memory import InMemoryPeer


@pytest.fixture
def archive(tmp_path):
    """serve's provider over a fresh storage, reachable in memory: (the in-memory server, the Pacs)."""
    pacs = Pacs(ServerConfig(storage=str(tmp_path / "archive")))
    server = InMemoryPeer(accept_policy(pacs.config), QueryRetrieve(pacs).serve)
    yield server, pacs
    server.close()
    pacs.stop()


def test_echo_store_find_get_and_commit_in_memory(archive, dataset_dir, tmp_path):
    server, pacs = archive
    peer = server.peer()
    assert dicomscu.echo(peer).status.ok
    stored = dicomscu.store(peer, [str(dataset_dir / "big")], commit=True)
    assert stored.ok and stored.stored == 6 and stored.commitment is not None
    assert len(stored.commitment.committed) == 6 and pacs.index.count() == 6
    studies = []
    found = dicomscu.find(peer, dicomscu.build_query("studyroot", "study", ["StudyInstanceUID", "PatientID"]),
                          on_answer=studies.append)
    assert found.ok and len(studies) == len({row["study_uid"] for row in pacs.index.rows()})
    got = dicomscu.get(peer, dicomscu.build_query("studyroot", "study",
                                                  [f"StudyInstanceUID={studies[0].StudyInstanceUID}"]),
                       dicomscu.RetrieveOptions(output=str(tmp_path / "out")))
    assert got.ok and got.written == len(list((tmp_path / "out").iterdir())) > 0
    # one association per operation, each over its own socket pair (the C-GET surveys with a C-FIND first)
    assert server.connections == 6


def test_one_association_many_operations_in_memory(archive, dataset_dir):
    server, _ = archive
    peer = server.peer()
    dicomscu.store(peer, [str(dataset_dir / "small")])
    with dicomscu.Association(peer, query_models=["studyroot", "patientroot"]) as assoc:
        assoc.echo()
        patients = list(assoc.find(dicomscu.build_query("patientroot", "patient", ["PatientID"])))
        first = next(iter(assoc.find(dicomscu.build_query("studyroot", "series", ["SeriesInstanceUID"]))))
        assert assoc.last_find is not None and assoc.last_find.cancelled  # stopped early: a C-CANCEL went
        assoc.echo()  # and the association goes on
    assert len(patients) == 4 and first.SeriesInstanceUID
    assert server.connections == 2


def test_refusals_and_a_closed_server_in_memory():
    strict = InMemoryPeer(AcceptPolicy("STRICT", {}, require_calling=("FRIEND",)), lambda channel: None)
    with strict:
        with pytest.raises(dicomscu.AssociationRejected, match="calling AE title not recognized"):
            dicomscu.echo(strict.peer(calling_ae="STRANGER"))
    with pytest.raises(ConnectionFailed, match="closed"):
        dicomscu.echo(strict.peer())


def test_a_provider_that_goes_silent_is_a_bounded_wait_in_memory():
    """The provider takes the request and never answers: the DIMSE timeout ends it, the provider's thread is
    released when the client aborts."""
    released = threading.Event()

    def silent(channel) -> None:
        try:
            channel.poll(30)
            channel.poll(30)  # the A-ABORT that follows the client's timeout
        except Exception:
            pass
        finally:
            released.set()

    policy = AcceptPolicy("SILENT", {"1.2.840.10008.1.1": ("1.2.840.10008.1.2",)})
    with InMemoryPeer(policy, silent) as server:
        began = time.monotonic()
        with pytest.raises((PeerTimeout, AssociationAborted)):
            dicomscu.echo(server.peer(timeouts=dicomscu.Timeouts(dimse=0.5)))
        assert time.monotonic() - began < 5
        assert released.wait(5)


def test_an_in_memory_host_is_never_a_real_one():
    from dicomscu.transport.association import resolve

    with pytest.raises(dicomscu.UnknownHost):
        resolve("peer-1.memory.invalid", 104)  # .invalid never resolves (RFC 2606): no collision possible
