"""The library's error contract: bad input is a UsageError in library terms (never a KeyError, TypeError or
RuntimeError), and an Association refuses a second operation while one is in flight, itself intact."""

from __future__ import annotations

import pytest

import dicomscu
from dicomscu import UsageError
from peers import free_port


@pytest.mark.parametrize("call, says", [
    (lambda: dicomscu.build_query("studyrot", "study", []), "no query model 'studyrot'"),
    (lambda: dicomscu.Peer("pacs", port="104"), "is not a number"),  # type: ignore[arg-type]
    (lambda: dicomscu.Peer(""), "hostname missing"),
    (lambda: dicomscu.Association(dicomscu.Peer("pacs", 104)).echo(), "not open"),
    (lambda: dicomscu.Association(dicomscu.Peer("pacs", 104), query_models=["nope"]), "unknown query model"),
    (lambda: dicomscu.RetrieveOptions(layout="nope"), "choose flat or hierarchical"),
])
def test_bad_input_is_a_usage_error_in_library_terms(call, says):
    with pytest.raises(UsageError, match=says) as raised:
        call()
    assert "--" not in str(raised.value)  # no command-line flag in a library's message


def test_an_association_refuses_a_second_operation_while_a_find_is_in_flight(tmp_path):
    from dicomscu.server.pacs import Pacs, ServerConfig
    from dicomscu.sample import SampleSpec, write_sample

    sample = write_sample(tmp_path / "sample", SampleSpec(patients=3, studies=1, series=1, count=3, matrix=8))
    studies = {__import__("pydicom").dcmread(path, stop_before_pixels=True).StudyInstanceUID for path in sample.files}
    assert len(studies) == 3
    server = Pacs(ServerConfig(port=0, host="127.0.0.1", storage=str(tmp_path / "storage")))
    server.start()
    try:
        peer = dicomscu.Peer("127.0.0.1", server.port)
        assert dicomscu.store(peer, [str(path) for path in sample.files]).stored == len(sample.files)
        query = dicomscu.build_query("studyroot", "study", ["PatientID"])
        with dicomscu.Association(peer) as association:
            answers = association.find(query)
            next(answers)  # one answer taken: the rest are still coming
            with pytest.raises(UsageError, match="still in flight"):
                association.echo()
            answers.close()  # a C-CANCEL goes, the association stays
            assert association.last_find is not None and association.last_find.cancelled
            assert association.echo().ok
            assert len(list(association.find(query))) == len(studies)
    finally:
        server.stop()


def test_serve_is_a_library_context_manager_on_ports_the_os_chooses(tmp_path):
    """dicomscu.serve(...): no free-port race (port 0 is bound by the server itself), a Peer and a URL to it,
    and stopped at the end of the block (its storage free for the next)."""
    import json
    import urllib.request

    from dicomscu.sample import SampleSpec, write_sample

    sample = write_sample(tmp_path / "sample", SampleSpec(patients=1, studies=1, series=1, count=2, matrix=8))
    with dicomscu.serve(tmp_path / "storage", http_port=0) as pacs:
        assert pacs.port > 0 and pacs.http_port and pacs.url and pacs.url.endswith("/dicom-web")
        assert dicomscu.echo(pacs.peer).status.ok
        assert dicomscu.store(pacs.peer, [str(path) for path in sample.files]).stored == 2
        with urllib.request.urlopen(pacs.url + "/instances") as response:
            assert len(json.loads(response.read())) == 2
    with dicomscu.serve(tmp_path / "storage") as again:  # the same storage, free again, its index kept
        found: list = []
        dicomscu.find(again.peer, dicomscu.build_query("studyroot", "image", ["SOPInstanceUID"]),
                      on_answer=found.append)
        assert len(found) == 2
