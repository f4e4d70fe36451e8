#!/usr/bin/env python3
"""Backpressure benchmark: C-FIND answers far faster than the reader of dicomscu's output.

usage: python bench/backpressure.py [--answers 1000000] [--reader-rate 2000000]

A loopback C-FIND SCP (raw sockets, this file) sends N matches as fast as it can;
``dicomscu --find --format csv`` writes them to a pipe read by a deliberately slow
reader (``--reader-rate`` bytes per second; 0 for as fast as possible).  Reports
the wall time and dicomscu's peak RSS (GNU time), once with a fast reader and once
with the slow one: with backpressure the peak is the same, whatever the answer
count and the reader's speed (dicomscu stops reading the socket while its output
is blocked, and TCP slows the server).  Asserts nothing.
"""

from __future__ import annotations

import argparse
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import hostile as h  # noqa: E402  (the tests' raw DICOM peer helpers)

FIND = "1.2.840.10008.5.1.4.1.2.1.1"


def answer(number: int) -> bytes:
    patient = f"P{number:09d}".encode()
    name = f"Name^{number}".encode().ljust(16)
    return (struct.pack("<HHL", 0x0008, 0x0052, 8) + b"PATIENT "
            + struct.pack("<HHL", 0x0010, 0x0010, len(name)) + name
            + struct.pack("<HHL", 0x0010, 0x0020, len(patient)) + patient)


def serve(listener: socket.socket, count: int) -> None:
    conn, _ = listener.accept()
    with conn:
        h.accept(conn)
        request = h.read_request(conn)
        pending = h.p_data(request.context_id, 3, h.response(0x8020, request.message_id, 0xFF00, FIND, dataset=True))
        batch = []
        for number in range(count):
            batch.append(pending + h.p_data(request.context_id, 2, answer(number)))
            if len(batch) == 256:
                conn.sendall(b"".join(batch))
                batch.clear()
        conn.sendall(b"".join(batch) + h.p_data(request.context_id, 3,
                                                h.response(0x8020, request.message_id, 0x0000, FIND)))
        h.serve_release(conn)


SLOW_READER = """
import sys, time
rate = float(sys.argv[1]); total = 0; started = time.monotonic()
while True:
    chunk = sys.stdin.buffer.read(65536)
    if not chunk:
        break
    total += len(chunk)
    if rate:
        time.sleep(max(0.0, total / rate - (time.monotonic() - started)))
print(total)
"""


def run(count: int, rate: float) -> tuple[float, int, int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    server = threading.Thread(target=serve, args=(listener, count), daemon=True)
    server.start()
    with tempfile.NamedTemporaryFile("w+") as rss_file:
        started = time.perf_counter()
        client = subprocess.Popen(["/usr/bin/time", "-o", rss_file.name, "-f", "%M", sys.executable, "-m",
                                   "dicomscu", "--find", "127.0.0.1", str(port), "-k", "10,10", "-k", "10,20",
                                   "--format", "csv", "--timeout", "120"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        reader = subprocess.run([sys.executable, "-c", SLOW_READER, str(rate)], stdin=client.stdout,
                                capture_output=True, text=True)
        client.wait()
        seconds = time.perf_counter() - started
        rss = int(rss_file.read().split()[-1]) // 1024
    listener.close()
    return seconds, rss, int(reader.stdout or 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=1_000_000)
    parser.add_argument("--reader-rate", type=float, default=2_000_000, help="bytes per second of the slow reader")
    args = parser.parse_args()
    for label, rate in (("fast reader", 0.0), (f"slow reader ({args.reader_rate / 1e6:g} MB/s)", args.reader_rate)):
        seconds, rss, size = run(args.answers, rate)
        print(f"{args.answers} answers, {label}: {seconds:6.1f} s, {size / 1e6:6.1f} MB of CSV, "
              f"dicomscu peak RSS {rss} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
