"""A scriptable misbehaving DICOM peer: just enough of the upper layer to break it on cue.

``HostilePeer(script)`` listens on a free loopback port; for each connection it runs
``script(conn)`` in a thread.  Scripts are built from the helpers below: read the
A-ASSOCIATE-RQ, answer with an A-ASSOCIATE-AC accepting (some of) its contexts, read
DIMSE messages, answer with hand-made PDUs.  Nothing here is a mock of dicomscu:
it is a real TCP peer that says wrong things.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field

IMPLICIT_LE = "1.2.840.10008.1.2"


def _pad(text: str, length: int) -> bytes:
    return text.encode("ascii").ljust(length)[:length]


def _uid(text: str) -> bytes:
    raw = text.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


@dataclass
class AssociateRQ:
    called: str
    calling: str
    #: context ID -> (abstract syntax, [transfer syntaxes])
    contexts: dict[int, tuple[str, list[str]]] = field(default_factory=dict)


def read_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def read_pdu(conn: socket.socket) -> tuple[int, bytes]:
    header = read_exactly(conn, 6)
    pdu_type, _, length = struct.unpack(">BBL", header)
    return pdu_type, read_exactly(conn, length)


def parse_rq(body: bytes) -> AssociateRQ:
    rq = AssociateRQ(body[4:20].decode().strip(), body[20:36].decode().strip())
    pos = 68
    while pos + 4 <= len(body):
        item_type, _, length = struct.unpack(">BBH", body[pos:pos + 4])
        value = body[pos + 4:pos + 4 + length]
        if item_type == 0x20:
            context_id = value[0]
            sub, abstract, syntaxes = 4, "", []
            while sub + 4 <= len(value):
                sub_type, _, sub_length = struct.unpack(">BBH", value[sub:sub + 4])
                text = value[sub + 4:sub + 4 + sub_length].rstrip(b"\0").decode()
                if sub_type == 0x30:
                    abstract = text
                elif sub_type == 0x40:
                    syntaxes.append(text)
                sub += 4 + sub_length
            rq.contexts[context_id] = (abstract, syntaxes)
        pos += 4 + length
    return rq


def associate_ac(rq: AssociateRQ, accept: bool = True, max_pdu: int = 16384) -> bytes:
    """An A-ASSOCIATE-AC accepting every context (Implicit VR LE), or none (`accept` False)."""
    items = struct.pack(">BBH", 0x10, 0, 21) + b"1.2.840.10008.3.1.1.1"
    for context_id, (_, syntaxes) in sorted(rq.contexts.items()):
        syntax = IMPLICIT_LE if IMPLICIT_LE in syntaxes else syntaxes[0]
        sub = struct.pack(">BBH", 0x40, 0, len(syntax)) + syntax.encode()
        result = 0 if accept else 3  # 3: abstract syntax not supported
        items += struct.pack(">BBHBBBB", 0x21, 0, 4 + len(sub), context_id, 0, result, 0) + sub
    user = struct.pack(">BBHL", 0x51, 0, 4, max_pdu)
    items += struct.pack(">BBH", 0x50, 0, len(user)) + user
    body = struct.pack(">HH", 1, 0) + _pad(rq.called, 16) + _pad(rq.calling, 16) + b"\0" * 32 + items
    return struct.pack(">BBL", 0x02, 0, len(body)) + body


def associate_rj(result: int, source: int, reason: int) -> bytes:
    return struct.pack(">BBLBBBB", 0x03, 0, 4, 0, result, source, reason)


def abort(source: int = 0, reason: int = 0) -> bytes:
    return struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, source, reason)


def release_rp() -> bytes:
    return struct.pack(">BBLL", 0x06, 0, 4, 0)


def p_data(context_id: int, control: int, data: bytes) -> bytes:
    item = struct.pack(">LBB", len(data) + 2, context_id, control) + data
    return struct.pack(">BBL", 0x04, 0, len(item)) + item


def command(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack("<HHL", 0, element, len(value)) + value for element, value in elements)
    return struct.pack("<HHL", 0, 0, 4) + struct.pack("<L", len(body)) + body


def us(value: int) -> bytes:
    return struct.pack("<H", value)


def response(field: int, message_id: int, status: int | None, sop_class: str = "1.2.840.10008.1.1",
             dataset: bool = False, extra: list[tuple[int, bytes]] = ()) -> bytes:
    elements = [(0x0002, _uid(sop_class)), (0x0100, us(field)), (0x0120, us(message_id)),
                (0x0800, us(0x0000 if dataset else 0x0101))]
    if status is not None:
        elements.append((0x0900, us(status)))
    return command(sorted(elements + list(extra)))


@dataclass
class Request:
    """A DIMSE request as read by the hostile peer (command bytes only, data set skipped)."""

    context_id: int
    message_id: int
    field: int
    has_dataset: bool


def read_request(conn: socket.socket) -> Request:
    """Read one DIMSE request (command and, if any, its data set fragments)."""
    command_bytes, context_id, has_dataset = b"", 0, False
    while True:
        pdu_type, body = read_pdu(conn)
        if pdu_type != 0x04:
            raise ConnectionError(f"expected P-DATA, got PDU 0x{pdu_type:02X}")
        pos = 0
        done = False
        while pos < len(body):
            length, context_id, control = struct.unpack(">LBB", body[pos:pos + 6])
            data = body[pos + 6:pos + 4 + length]
            pos += 4 + length
            if control & 1:
                command_bytes += data
                if control & 2:
                    values = _command_values(command_bytes)
                    has_dataset = struct.unpack("<H", values[0x0800])[0] != 0x0101
                    if not has_dataset:
                        done = True
            elif control & 2:
                done = True
        if done:
            values = _command_values(command_bytes)
            return Request(context_id, struct.unpack("<H", values[0x0110])[0],
                           struct.unpack("<H", values[0x0100])[0], has_dataset)


def _command_values(data: bytes) -> dict[int, bytes]:
    values, pos = {}, 0
    while pos + 8 <= len(data):
        _, element, length = struct.unpack("<HHL", data[pos:pos + 8])
        values[element] = data[pos + 8:pos + 8 + length]
        pos += 8 + length
    return values


def accept(conn: socket.socket, accept_contexts: bool = True) -> AssociateRQ:
    """Read the A-ASSOCIATE-RQ and accept it."""
    _, body = read_pdu(conn)
    rq = parse_rq(body)
    conn.sendall(associate_ac(rq, accept_contexts))
    return rq


def serve_release(conn: socket.socket) -> None:
    """Answer an A-RELEASE-RQ if one comes."""
    try:
        pdu_type, _ = read_pdu(conn)
        if pdu_type == 0x05:
            conn.sendall(release_rp())
    except (ConnectionError, OSError):
        pass


class HostilePeer:
    """A loopback listener running `script(conn)` for each connection (in threads)."""

    def __init__(self, script) -> None:
        self.script = script
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            conn.settimeout(30)
            self._conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn) -> None:
        try:
            self.script(conn)
        except (ConnectionError, OSError):
            pass  # the client hung up: expected in most cases
        except BaseException as exc:  # a bug in the script
            self.errors.append(exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass
        self.server.close()

    def __enter__(self) -> "HostilePeer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def stall(seconds: float = 30) -> None:
    time.sleep(seconds)
