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


def test_the_command_line_reaches_every_kind_of_peer_through_one_target_interface(archive, dataset_dir, tmp_path):
    """app.py asks a Target (operations/target.py) and never looks at what kind it is: the DIMSE one here, in
    memory; the DICOMweb and cluster ones map the same calls onto their protocols, or refuse in their words."""
    from dicomscu.operations.target import ClusterTarget, DimseTarget, WebTarget, target_for
    from dicomscu.web.service import WebPeer

    server, _ = archive
    target = target_for(server.peer())
    assert isinstance(target, DimseTarget) and target.echo().status.ok
    assert target.store([str(dataset_dir / "big")],
                        dicomscu.StoreOptions(journal=str(tmp_path / "journal.sqlite"))).stored == 6
    query = dicomscu.build_query("studyroot", "study", ["StudyInstanceUID"])
    answers = []
    assert target.find(query, dicomscu.FindOptions(), on_answer=answers.append).matches == len(answers) > 0
    study = dicomscu.build_query("studyroot", "study", [f"StudyInstanceUID={answers[0].StudyInstanceUID}"])
    report = target.retrieve("get", study, dicomscu.RetrieveOptions(output=str(tmp_path / "out")))
    assert report.ok and report.written > 0 and target.retrieval_name("get") == "C-GET"
    web = target_for(server.peer(), WebPeer.parse("http://127.0.0.1:1/dicom-web"))
    assert isinstance(web, WebTarget) and web.retrieval_name("get") == "WADO-RS" and not web.query_needed([{}])
    with pytest.raises(dicomscu.UsageError, match="C-MOVE has no DICOMweb counterpart"):
        web.retrieval_name("move")
    with pytest.raises(dicomscu.UsageError, match="DIMSE service"):
        web.store(["x.dcm"], dicomscu.StoreOptions(commit=True))
    cluster = target_for(server.peer(), cluster="tcp://127.0.0.1:1")
    assert isinstance(cluster, ClusterTarget) and not cluster.light_identifiers
    with pytest.raises(dicomscu.UsageError, match="runs from this machine"):
        cluster.store(["x.dcm"], dicomscu.StoreOptions(commit=True))


def test_what_a_retrieval_brings_equals_what_was_stored_element_by_element(archive, tmp_path):
    """Deflated instances through serve's C-GET, as stored (accept-all) and re-encoded (Implicit VR LE only),
    compared element by element with the originals; one sent by a peer that left its deflate stream odd
    comes back even (PS3.5 A.5: the one sending rule pads it on every path), its elements unchanged."""
    from pydicom import dcmread

    from dicomscu.files.probe import probe
    from dicomscu.sample import SampleSpec, write_sample

    server, pacs = archive
    write_sample(tmp_path / "sent", SampleSpec(patients=1, studies=1, series=2, images=3, modalities=("OT",),
                                               layout="flat"), compress=("deflate",))
    originals = sorted((tmp_path / "sent" / "deflate").iterdir())
    padded = next(path for path in originals if path.read_bytes().endswith(b"\0"))
    for path in originals:
        data = path.read_bytes()
        info = probe(data)
        dataset = data[info.dataset_offset:]
        if path == padded:
            dataset = dataset[:-1]  # as a sender that does not pad would send it: an odd stream
            assert len(dataset) % 2
        assert pacs.store(info.sop_class, info.sop_instance, dataset, info.transfer_syntax) == 0
    study = dicomscu.build_query("studyroot", "study", [f"StudyInstanceUID={dcmread(padded).StudyInstanceUID}"])
    for accept_all, folder in ((True, "as-stored"), (False, "implicit")):
        report = dicomscu.get(server.peer(), study, dicomscu.RetrieveOptions(output=str(tmp_path / folder),
                                                                            accept_all_syntaxes=accept_all))
        assert report.ok and report.written == len(originals)
        for original in originals:
            sent = dcmread(original)
            arrived_path = tmp_path / folder / f"{sent.SOPInstanceUID}.dcm"
            arrived = dcmread(arrived_path)
            assert [element.tag for element in arrived] == [element.tag for element in sent]
            for element in sent:
                assert arrived[element.tag].value == element.value, (folder, original.name, element.tag)
            data = arrived_path.read_bytes()
            info = probe(data)
            expected = "1.2.840.10008.1.2.1.99" if accept_all else "1.2.840.10008.1.2"
            assert info.transfer_syntax == expected and (len(data) - info.dataset_offset) % 2 == 0
