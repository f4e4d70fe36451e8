"""Writers for C-FIND answers: a table for people, JSON and CSV for scripts, a text dump.

JSON, CSV and dump write each answer as it arrives (memory does not grow with
the number of matches); the table needs every row to size its columns, so it
keeps them (use ``--limit`` or a machine format for very large results).
"""

from __future__ import annotations

import csv
import json
import sys
from typing import TextIO

from pydicom.dataset import Dataset

FORMATS = ("table", "json", "csv", "dump")


def cell(dataset: Dataset, keyword: str) -> str:
    """One value as text: multi-values joined with '\\', sequences as DICOM JSON."""
    element = dataset.get(keyword)
    if element is None:
        return ""
    element = dataset[keyword]
    if element.VR == "SQ":
        return json.dumps([item.to_json_dict() for item in element.value], ensure_ascii=False)
    value = element.value
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


class AnswerWriter:
    """Base: ``add`` each answer, then ``close``."""

    def __init__(self, columns: list[str], stream: TextIO = sys.stdout) -> None:
        self.columns = columns
        self.stream = stream
        self.count = 0

    def add(self, answer: Dataset) -> None:
        self.count += 1

    def close(self) -> None:
        self.stream.flush()


class JsonWriter(AnswerWriter):
    """One JSON array of answers in the DICOM JSON model (PS3.18 F.2), streamed."""

    def add(self, answer: Dataset) -> None:
        self.stream.write("[\n" if self.count == 0 else ",\n")
        super().add(answer)
        self.stream.write(json.dumps(answer.to_json_dict(), ensure_ascii=False))

    def close(self) -> None:
        self.stream.write("[]\n" if self.count == 0 else "\n]\n")
        super().close()


class CsvWriter(AnswerWriter):
    """A header row of keywords, then one row per answer."""

    def __init__(self, columns: list[str], stream: TextIO = sys.stdout) -> None:
        super().__init__(columns, stream)
        self._writer = csv.writer(stream, lineterminator="\n")
        self._writer.writerow(columns)

    def add(self, answer: Dataset) -> None:
        super().add(answer)
        self._writer.writerow([cell(answer, keyword) for keyword in self.columns])


class DumpWriter(AnswerWriter):
    """gdcmscu-like text: a header line per answer, then its elements."""

    def add(self, answer: Dataset) -> None:
        self.stream.write(f"# Match {self.count}\n{answer}\n")
        super().add(answer)


class TableWriter(AnswerWriter):
    """A rich table, printed when the query ends."""

    def __init__(self, columns: list[str], stream: TextIO = sys.stdout, echo_dumps: bool = False) -> None:
        super().__init__(columns, stream)
        self.rows: list[list[str]] = []
        self.echo_dumps = echo_dumps

    def add(self, answer: Dataset) -> None:
        if self.echo_dumps:
            self.stream.write(f"# Match {self.count}\n{answer}\n")
        super().add(answer)
        self.rows.append([cell(answer, keyword) for keyword in self.columns])

    def close(self) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        table = Table(*(escape(c) for c in self.columns), header_style="bold")
        for row in self.rows:
            table.add_row(*(Text(value) for value in row))  # values are data, never markup
        Console(file=self.stream, soft_wrap=False).print(table)
        super().close()


def writer_for(name: str, columns: list[str], verbose: bool = False, stream: TextIO = sys.stdout) -> AnswerWriter:
    if name == "table":
        return TableWriter(columns, stream, echo_dumps=verbose)
    if name == "json":
        return JsonWriter(columns, stream)
    if name == "csv":
        return CsvWriter(columns, stream)
    return DumpWriter(columns, stream)
