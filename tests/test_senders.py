"""Third-party senders into serve: DCMTK's storescu, pynetdicom's storescu and dcmjs-dimse (Node).

The public corpus of tests/test_corpus.py (its first round: every distinct instance) is sent by each;
nothing a sender was told "stored" may be missing from serve, and what DCMTK and pynetdicom send must be
kept element by element.  What fails is named here with whose doing it is: the sender's (a file it
cannot read or encode), or serve's refusal of a data set it cannot file (the same refusals as for
dicomscu's own client).  dcmjs-dimse re-encodes what it sends (dcmjs parses and writes each data set),
so that its copies are checked for presence, not for identity.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import dicomscu
from test_corpus import REFUSED_BY, by_uid, corpus_files, rounds_of, same_data_set

from dicomscu.files.probe import probe
from dicomscu.server.pacs import Pacs

NODE_PEERS = Path(__file__).parent / "node"
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
#: Files pynetdicom's storescu cannot read (no file meta: a raw data set, or not DICOM).
PYNETDICOM_CANNOT_READ = {"OT-PAL-8-face.dcm", "ExplVR_LitEndNoMeta.dcm", "rtstruct.dcm"}
#: What dcmjs-dimse does not send, and why (its doing: each stops its own association before a C-STORE-RQ).
DCMJS_DOES_NOT_SEND = {
    "OT-PAL-8-face.dcm": "expected header is missing", "ExplVR_LitEndNoMeta.dcm": "expected header is missing",
    "rtstruct.dcm": "expected header is missing",
    "color-pl.dcm": "Value exceeds max length", "ExplVR_BigEnd.dcm": "Value exceeds max length",  # DA 1994.11.05
    "liver.dcm": "", "badVR.dcm": "",  # no response and no error: dcmjs gives up on them silently
}
#: serve's refusals of what dcmjs-dimse sends, beyond those of every sender: its deflated data set does not
#: inflate as the Deflated Explicit VR Little Endian stream PS3.5 A.5 defines (RFC 1951).
DCMJS_REFUSED = {"image_dfl.dcm": 0xC000}


@pytest.fixture(scope="module")
def instances() -> list[Path]:
    rounds, _ = rounds_of(corpus_files())
    return rounds[0]


@pytest.fixture
def serve(tmp_path):
    with dicomscu.serve(tmp_path / "serve") as served:  # (a port the OS chooses as the server binds)
        yield served.pacs


def _kept(pacs: Pacs) -> dict[str, Path]:
    return by_uid(Path(pacs.storage))


def _uid(path: Path) -> str:
    return probe(path.read_bytes()).sop_instance


def _refused_by_serve(path: Path) -> bool:
    return path.name in REFUSED_BY["serve"]


def test_dcmtk_storescu_into_serve_loses_and_changes_nothing(serve, instances):
    """DCMTK's storescu without codecs proposes only uncompressed syntaxes for a compressed file and cannot
    convert it (its limitation, not serve's): the uncompressed files are sent."""
    files = [path for path in instances if probe(path.read_bytes()).transfer_syntax in UNCOMPRESSED]
    result = subprocess.run(["/usr/bin/storescu", "--required", "--no-halt", "-aet", "DCMTKSCU", "-aec", serve.config.aetitle,
                             "127.0.0.1", str(serve.port), *map(str, files)],
                            capture_output=True, text=True, timeout=600)
    kept = _kept(serve)
    missing = [path.name for path in files if _uid(path) not in kept and not _refused_by_serve(path)]
    changed = [path.name for path in files if _uid(path) in kept and not same_data_set(path, kept[_uid(path)])]
    assert len(files) >= 80 and not missing and not changed, (missing, changed, result.stderr[-2000:])


def test_pynetdicom_storescu_into_serve_loses_and_changes_nothing(serve, instances, caplog):
    caplog.set_level(logging.INFO, logger="dicomscu")
    result = subprocess.run([sys.executable, "-m", "pynetdicom", "storescu", "-cx", "-aet", "PYNETSCU", "-aec",
                             serve.config.aetitle, "127.0.0.1", str(serve.port), *map(str, instances)],
                            capture_output=True, text=True, timeout=600)
    kept = _kept(serve)
    missing = sorted(path.name for path in instances if _uid(path) not in kept and not _refused_by_serve(path))
    changed = [path.name for path in instances if _uid(path) in kept and not same_data_set(path, kept[_uid(path)])]
    # (on a failure: the sender's first complaints and what serve said, short enough to be shown whole)
    said = [line for line in result.stderr.splitlines() if any(w in line.lower() for w in ("error", "abort", "timeout", "releas", "reject"))]
    assert missing == sorted(PYNETDICOM_CANNOT_READ) and not changed, (
        len(missing), missing[:5], changed, said[:8], [r.getMessage()[:200] for r in caplog.records if r.name.startswith("dicomscu")][-8:])


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_PEERS / "node_modules" / "dcmjs-dimse").is_dir():
        if os.environ.get("CI"):
            raise RuntimeError("node and tests/node/node_modules are required (tests/run.sh installs them)")
        pytest.skip("dcmjs-dimse is not installed (npm install --prefix tests/node)")
    return node


def test_dcmjs_dimse_into_serve_loses_nothing(serve, instances, tmp_path):
    """Every file dcmjs-dimse was told "stored" is kept; what it does not send and what serve refuses of it
    are exactly the known cases, each with its reason."""
    results = tmp_path / "results.jsonl"
    run = subprocess.run([_node(), str(NODE_PEERS / "dimse_store.js"), str(results), "127.0.0.1",
                          str(serve.port), serve.config.aetitle, *map(str, instances)],
                         capture_output=True, text=True, timeout=900, cwd=NODE_PEERS)
    assert run.returncode == 0, run.stderr[-2000:]
    outcomes = {Path(line["file"]).name: line for line in map(json.loads, results.read_text().splitlines())}
    kept = _kept(serve)
    stored = [path for path in instances if outcomes[path.name]["status"] == 0]
    lost = [path.name for path in stored if _uid(path) not in kept]
    not_sent = {name: outcome["error"] or "" for name, outcome in outcomes.items() if outcome["status"] is None}
    refused = {name: outcome["status"] for name, outcome in outcomes.items()
               if outcome["status"] not in (None, 0) and name not in REFUSED_BY["serve"]}
    assert not lost, lost
    assert set(not_sent) == set(DCMJS_DOES_NOT_SEND), not_sent
    assert all(DCMJS_DOES_NOT_SEND[name] in error for name, error in not_sent.items()), not_sent
    assert refused == DCMJS_REFUSED, refused
    assert len(stored) >= 120 and sum(same_data_set(path, kept[_uid(path)]) for path in stored) >= 50
