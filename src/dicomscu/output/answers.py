"""Writers for C-FIND answers: a table for people, JSON and CSV for scripts, a text dump.

JSON, CSV and dump write each answer as it arrives (memory does not grow with
the number of matches); the table needs every row to size its columns, so it
keeps them (use ``--limit`` or a machine format for very large results).
Answers arrive as :class:`~dicomscu.operations.find.RawAnswer`: flat ones are read
from their bytes (:mod:`.flat`), the others decoded by pydicom.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import TextIO

from pydicom.dataset import Dataset

from dicomscu.output.flat import read_flat
from dicomscu.transport import interrupts
from dicomscu.uids import DEFLATED_EXPLICIT_VR_LE, EXPLICIT_VR_BE, IMPLICIT_VR_LE

Columns = list[tuple[str, int]]


def cell(dataset: Dataset, tag: int) -> str:
    """One value as text: multi-values joined with '\\', sequences as DICOM JSON."""
    if tag not in dataset:
        return ""
    element = dataset[tag]
    if element.VR == "SQ":
        return json.dumps([item.to_json_dict() for item in element.value], ensure_ascii=False)
    value = element.value
    if value is None or value == "":
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _flat(answer):
    syntax = answer.syntax
    if syntax == DEFLATED_EXPLICIT_VR_LE:
        return None
    return read_flat(answer.raw, syntax == IMPLICIT_VR_LE, syntax != EXPLICIT_VR_BE)


def row(answer, columns: Columns) -> list[str]:
    flat = _flat(answer)
    if flat is not None:
        return [flat.cell(tag) for _, tag in columns]
    dataset = answer.dataset()
    return [cell(dataset, tag) for _, tag in columns]


def json_dict(answer) -> dict:
    flat = _flat(answer)
    return flat.json() if flat is not None else answer.dataset().to_json_dict()


class AnswerWriter:
    """Base: ``add`` each answer, then ``close``."""

    def __init__(self, columns: Columns, stream: TextIO = sys.stdout) -> None:
        self.columns = columns
        self.stream = stream
        self.count = 0
        self._closed = False

    def add(self, answer) -> None:
        self.count += 1

    def close(self) -> None:
        self.stream.flush()


class JsonWriter(AnswerWriter):
    """One JSON array of answers in the DICOM JSON model (PS3.18 F.2), streamed.  Whatever stops the run
    (Ctrl-C, SIGTERM, a failure), stdout holds a whole document: each answer is written in one step with
    its separator, and interrupts wait for it (and for the closing bracket) to be written."""

    def add(self, answer) -> None:
        text = ("[\n" if self.count == 0 else ",\n") + json.dumps(json_dict(answer), ensure_ascii=False)
        with interrupts.deferred():
            self.stream.write(text)
            super().add(answer)

    def close(self) -> None:
        with interrupts.deferred():
            if not self._closed:
                self.stream.write("[]\n" if self.count == 0 else "\n]\n")
                self._closed = True
            super().close()


class CsvWriter(AnswerWriter):
    """A header row of keywords, then one row per answer."""

    def __init__(self, columns: Columns, stream: TextIO = sys.stdout) -> None:
        super().__init__(columns, stream)
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow([keyword for keyword, _ in columns])

    def add(self, answer) -> None:
        super().add(answer)
        self._writer.writerow(row(answer, self.columns))


class DumpWriter(AnswerWriter):
    """gdcmscu's text: ``Find Response: N`` (from 1), then the answer as gdcmdump lists it."""

    def add(self, answer) -> None:
        from dicomscu.output.gdcmdump import answer_lines

        lines = "\n".join(answer_lines(answer))
        self.stream.write(f"Find Response: {self.count + 1}\n{lines}\n")
        super().add(answer)


class TableWriter(AnswerWriter):
    """A rich table, printed when the query ends; with -V each answer's dump as it comes."""

    def __init__(self, columns: Columns, stream: TextIO = sys.stdout, echo_dumps: bool = False) -> None:
        super().__init__(columns, stream)
        self.rows: list[list[str]] = []
        self.echo_dumps = echo_dumps

    def add(self, answer) -> None:
        if self.echo_dumps:
            self.stream.write(f"# Match {self.count}\n{answer.dataset()}\n")
        super().add(answer)
        self.rows.append(row(answer, self.columns))

    def close(self) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        table = Table(header_style="bold")
        for keyword, _ in self.columns:  # a value is folded, never cut: a UID must stay whole to copy
            table.add_column(escape(keyword), overflow="fold")
        for values in self.rows:
            table.add_row(*(Text(value) for value in values))  # values are data, never markup
        # on a terminal, columns fold to its width; elsewhere nothing folds (a file or pipe has no width)
        terminal = hasattr(self.stream, "isatty") and self.stream.isatty()
        Console(file=self.stream, soft_wrap=False, width=None if terminal else 100_000).print(table)
        super().close()


def writer_for(name: str, columns: Columns, verbose: bool = False, stream: TextIO = sys.stdout) -> AnswerWriter:
    if name == "table":
        return TableWriter(columns, stream, echo_dumps=verbose)
    if name == "json":
        return JsonWriter(columns, stream)
    if name == "csv":
        return CsvWriter(columns, stream)
    return DumpWriter(columns, stream)
