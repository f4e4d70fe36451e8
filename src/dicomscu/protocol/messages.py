"""DIMSE messages over P-DATA: fragmentation into PDUs and reassembly of fragments (PS3.8 Annex E, PS3.7 8).

A message is a command set and, when the command says so, a data set, each sent
as one or more presentation data values (PDVs) whose message control header
marks command or data set, and the last fragment.  :func:`fragments` cuts one
message into P-DATA-TF PDUs within the peer's maximum length, as buffers for
scatter-gather writes (the data set, often most of a file, is never copied);
:class:`Reassembler` collects received fragments into :class:`Message` objects.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Callable, Protocol

from dicomscu.protocol.commands import Command, decode

COMMAND, LAST = 0x01, 0x02
#: P-DATA-TF header (type, reserved, PDU length) + PDV item header (length, context ID, control).
_PDU_HEADER = struct.Struct(">BBLLBB")


class DataSink(Protocol):
    """Where a data set goes as its fragments arrive, instead of memory (a file being written, say).

    Given by the I/O layer (:attr:`Reassembler.open_sink`): the core itself opens nothing.
    ``write`` must not raise (a sink keeps its own failure for its owner to read);
    ``discard`` drops what was written (the message was refused, or never finished).
    """

    def write(self, fragment: memoryview) -> None: ...

    def discard(self) -> None: ...


@dataclass
class Message:
    """A whole DIMSE message received on presentation context `context_id`."""

    context_id: int
    command: Command
    #: The encoded data set (identifier) that followed the command, or None.
    dataset: bytearray | None = None
    #: The data set was larger than the receiver keeps: it was dropped (refuse the request).
    oversize: bool = False
    #: Where the data set went instead of `dataset`, when a sink took it.
    sink: DataSink | None = None


class SequenceError(ValueError):
    """Fragments out of order: a data set before its command, a context change inside a message."""


def fragments(context_id: int, command: bytes, dataset: bytes | bytearray | memoryview | None,
              max_pdu: int) -> list:
    """`command` then `dataset` as P-DATA-TF PDUs, one PDV each: alternating headers and payload views.

    Each PDU's variable field stays within the peer's Maximum Length `max_pdu` (0: no
    limit); a PDV adds 6 bytes to its fragment (item length, context ID, control header).
    """
    pieces: list = []
    parts = [(command, True)] + ([(dataset, False)] if dataset is not None else [])
    for payload, is_command in parts:
        view = memoryview(payload).cast("B")
        size = len(view)
        step = max_pdu - 6 if max_pdu else max(size, 1)
        start = 0
        while True:
            end = min(start + step, size)
            control = (COMMAND if is_command else 0) | (LAST if end == size else 0)
            item_length = end - start + 2
            pieces.append(_PDU_HEADER.pack(0x04, 0, item_length + 4, item_length, context_id, control))
            pieces.append(view[start:end])
            if end == size:
                break
            start = end
    return pieces


class Reassembler:
    """PDVs in, whole messages out.

    Memory per message is its data set, once, up to `spill_over` bytes: past that,
    `open_sink` (context ID, command -> a :class:`DataSink` or None) takes it, what
    arrived so far and every fragment after, so memory stays flat whatever the data
    set's size while the common small data set never leaves memory.  A data set past
    `max_dataset` bytes is not kept at all: its message arrives with ``oversize`` set
    and no data, for the receiver to refuse with a status instead of holding gigabytes.
    """

    def __init__(self, max_dataset: int | None = None,
                 open_sink: Callable[[int, Command], DataSink | None] | None = None,
                 spill_over: int = 0) -> None:
        self.max_dataset = max_dataset
        self.open_sink = open_sink
        self.spill_over = spill_over
        self._reset()

    def _reset(self) -> None:
        self._context: int | None = None
        self._command = bytearray()
        self._message: Message | None = None
        self._size = 0
        self._declined = False  # the sink factory said no for this message: keep it in memory

    @property
    def in_message(self) -> bool:
        """Fragments of a message have arrived, and not all of them."""
        return self._context is not None

    def add(self, context_id: int, control: int, fragment) -> Message | None:
        """Take one PDV; the message it completes, if any."""
        if self._context is not None and context_id != self._context:
            raise SequenceError(f"a fragment on presentation context {context_id} inside a message on "
                                f"context {self._context}")
        self._context = context_id
        if control & COMMAND:
            if self._message is not None:
                raise SequenceError("a command fragment after the command set was complete")
            self._command += fragment
            if not control & LAST:
                if len(self._command) > 64 * 1024:
                    raise SequenceError("a command set longer than 64 KiB")
                return None
            message = Message(context_id, decode(self._command))
            if not message.command.has_dataset:
                self._reset()
                return message
            self._message, self._command = message, bytearray()
            message.dataset = bytearray()
            return None
        pending = self._message
        if pending is None:
            raise SequenceError("a data set fragment before its command set")
        self._size += len(fragment)
        if self.max_dataset is not None and self._size > self.max_dataset:
            if not pending.oversize:  # past the limit: keep nothing more of it
                pending.oversize, pending.dataset = True, None
                self._drop_sink(pending)
        elif pending.sink is not None:
            pending.sink.write(fragment)
        elif pending.dataset is not None:
            pending.dataset += fragment
            if self.open_sink is not None and not self._declined and len(pending.dataset) > self.spill_over:
                self._spill(pending, context_id)
        if not control & LAST:
            return None
        self._reset()
        return pending

    def _spill(self, message: Message, context_id: int) -> None:
        """Move the data set from memory to a sink, which takes the rest as it comes."""
        sink = self.open_sink(context_id, message.command) if self.open_sink else None
        if sink is None or message.dataset is None:
            self._declined = True
            return
        sink.write(memoryview(message.dataset))
        message.sink, message.dataset = sink, None

    @staticmethod
    def _drop_sink(message: Message) -> None:
        if message.sink is not None:
            message.sink.discard()
            message.sink = None

    def abandon(self) -> None:
        """The association ended inside a message: its sink, if any, drops what it holds."""
        if self._message is not None:
            self._drop_sink(self._message)
        self._reset()
