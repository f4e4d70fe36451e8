"""Turning received PDV items into DIMSE messages without pynetdicom's decoder, when we can.

The reactor (:class:`~.dul.EventDrivenDUL`) hands the PDV items of every P-DATA-TF
received on an established association to an :class:`Assembler`.  It collects the
command and data set fragments of the current message; once the command set is
complete, `parse` (for instance :func:`.dimse.parse_response`) decodes it, or says
it cannot (None), in which case the whole message is replayed, P-DATA by P-DATA,
into pynetdicom's own DIMSE decoder.  Decoded messages go to the DIMSE provider's
queue, where the rest of pynetdicom (and our :class:`~.association.Channel`) expect
them.
"""

from __future__ import annotations

from typing import Callable

from pynetdicom.pdu_primitives import P_DATA

_COMMAND, _LAST = 0x01, 0x02


def _as_primitive(items) -> P_DATA:
    primitive = P_DATA()
    primitive.presentation_data_value_list = items
    return primitive


class Assembler:
    """A ``pdata_sink``: PDV items in, decoded messages out on `provider.msg_queue`.

    `parse(command_bytes)` returns an object with ``has_dataset`` and ``dataset``
    attributes, or None to leave the message to pynetdicom.  Memory per message is
    its data set, once: the fragments kept for a replay are dropped as soon as the
    command is ours, and the data set is handed over without a copy.  A data set
    past `max_dataset` bytes is not kept at all: the message arrives with an empty
    data set and ``oversize`` set, for the receiver to refuse.
    """

    def __init__(self, provider, parse: Callable[[bytes], object | None], max_dataset: int | None = None) -> None:
        self._provider = provider
        self._parse = parse
        self._full_decoder = provider.receive_primitive
        self._max = max_dataset
        self._reset()

    def _reset(self) -> None:
        self._items: list = []  # PDV lists received for this message, for a replay
        self._command = bytearray()
        self._dataset = bytearray()
        self._size = 0
        self._message = None

    def __call__(self, items) -> None:
        if self._provider.message is not None:  # pynetdicom is assembling this one
            self._full_decoder(_as_primitive(items))
            return
        if self._message is None:
            self._items.append(items)  # needed only until the command set is known to be ours
        for context_id, pdv in items:
            control, data = pdv[0], pdv[1:]
            if control & _COMMAND:
                self._command += data
                if not control & _LAST:
                    continue
                self._message = self._parse(bytes(self._command))
                if self._message is None:
                    replay = self._items
                    self._reset()
                    for queued in replay:
                        self._full_decoder(_as_primitive(queued))
                    return
                self._items = []
                self._message.oversize = False
            else:
                self._size += len(data)
                if self._max is None or self._size <= self._max:
                    self._dataset += data
                elif self._dataset:
                    self._dataset = bytearray()  # past the limit: keep nothing more of it
                if not control & _LAST or self._message is None:
                    continue
                self._message.oversize = self._max is not None and self._size > self._max
                self._message.dataset = self._dataset  # no copy: a new buffer starts with the next message
            if self._message.dataset is not None or not self._message.has_dataset:
                self._provider.msg_queue.put((context_id, self._message))
                self._reset()
