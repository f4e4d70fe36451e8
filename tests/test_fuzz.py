"""Bounded, seeded fuzzing: random and mutated PDUs, files and --key strings.

Every input must end in a result or a :class:`~dicomscu.errors.DicomscuError` (for
files: :class:`~dicomscu.files.probe.BadFile`), within the timeouts, with no
exception escaping in any thread.  Seeds are fixed so that a failure reproduces.
"""

from __future__ import annotations

import random
import struct
import threading
import time

import pytest

import dicomscu
import hostile as h
from dicomscu import Peer, Timeouts
from dicomscu.errors import DicomscuError, UsageError
from dicomscu.files.probe import BadFile, probe
from dicomscu.query.keys import parse_key

ECHO_SEED_COUNT = 40


@pytest.fixture
def thread_failures():
    """Exceptions raised in any thread during the test (they must not exist)."""
    failures = []
    previous = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value)
    yield failures
    threading.excepthook = previous


def mutate(rng: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        choice = rng.random()
        if choice < 0.4 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.6 and data:
            del data[rng.randrange(len(data)):]
        elif choice < 0.8:
            data[rng.randrange(len(data) + 1):0] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            position = rng.randrange(max(len(data) - 4, 1))
            data[position:position + 4] = struct.pack(">L", rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]))
    return bytes(data)


def fuzz_script(seed: int):
    """Accept (or not), then answer with a mutated A-ASSOCIATE-AC or a mutated C-ECHO-RSP."""
    def script(conn):
        rng = random.Random(seed)
        _, body = h.read_pdu(conn)
        rq = h.parse_rq(body)
        ac = h.associate_ac(rq)
        if rng.random() < 0.5:
            conn.sendall(mutate(rng, ac))
        else:
            conn.sendall(ac)
            request = h.read_request(conn)
            rsp = h.p_data(request.context_id, 3, h.response(0x8030, request.message_id, 0))
            conn.sendall(mutate(rng, rsp))
        h.stall(3)
    return script


@pytest.mark.parametrize("seed", range(ECHO_SEED_COUNT))
def test_echo_survives_mutated_pdus(seed, thread_failures):
    with h.HostilePeer(fuzz_script(seed)) as peer:
        started = time.monotonic()
        try:
            dicomscu.echo(Peer("127.0.0.1", peer.port, timeouts=Timeouts(1, 1, 1, 1)))
        except DicomscuError:
            pass
        assert time.monotonic() - started < 6
        assert not peer.errors
    assert not thread_failures


def test_probe_survives_mutated_files(dataset_dir):
    rng = random.Random(7)
    originals = [p.read_bytes() for p in sorted((dataset_dir / "small").iterdir())[:3]]
    originals.append(sorted((dataset_dir / "big").iterdir())[0].read_bytes()[:20000])
    for _ in range(3000):
        data = mutate(rng, rng.choice(originals))
        try:
            probe(data)
        except BadFile:
            pass


def test_key_parser_survives_random_strings():
    rng = random.Random(11)
    alphabet = "0123456789abcdefABCDEF,=.[]()\"'*?\\ -_PatientNameSequence\x00é"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        try:
            parse_key(text)
        except UsageError as exc:
            assert text in str(exc) or not text.strip() or "'" in str(exc)
