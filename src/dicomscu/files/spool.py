"""A received data set written to its file as its fragments arrive: memory stays flat in its size.

``dicomscu serve`` opens a :class:`Spool` when a C-STORE-RQ's command set is in (its
SOP Class and Instance UIDs and the context's transfer syntax give the file meta),
the protocol core writes each data set fragment into it (a
:class:`~dicomscu.protocol.messages.DataSink`), and the server then reads the whole
file through a memory map (:meth:`Spool.mapped`): proving it whole and reading its
index keys touches the element headers, not the pixel data.  The file has a
temporary name in the storage until it is renamed into place (:meth:`Spool.place`);
a refused or unfinished one is removed, and one left by a kill is removed at start
(:func:`~dicomscu.files.instances.remove_partial_files`).
"""

from __future__ import annotations

import itertools
import mmap
import os
from contextlib import contextmanager
from typing import Iterator

from dicomscu.files.instances import PARTIAL_SUFFIX, discard, file_header, partial_prefix


#: Numbers this process's temporary names (with its pid: unique without mkstemp's random names and retries).
_NUMBERS = itertools.count()


def _create(folder: str, prefix: str) -> tuple[int, str]:
    """A new file of ours in `folder` (O_EXCL: never one that exists), open for writing; (descriptor, path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        path = os.path.join(folder, f"{prefix}{os.getpid()}-{next(_NUMBERS)}{PARTIAL_SUFFIX}")
        try:
            return os.open(path, flags, 0o666), path  # (less the umask: FILE_MODE, as open() gives)
        except FileExistsError:  # left by an earlier process of the same pid: the next number
            continue


def _write_all(handle: int, data: memoryview | bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(handle, view)
        view = view[written:]


class Spool:
    """A temporary file in `folder`: `header` (a file meta, when what comes is a bare data set), then the
    bytes as they come.  WADO-RS parts, whole files each, take one without a header.

    Written through its descriptor, unbuffered: the fragments a peer sends are large, and a small instance
    is one write (a store of thousands of small files spends nothing on buffering or random names)."""

    @classmethod
    def for_instance(cls, folder: str, sop_class: str, sop_instance: str, transfer_syntax: str) -> "Spool":
        """A spool for a C-STORE data set: the file meta written first, from the request."""
        return cls(folder, file_header(sop_class, sop_instance, transfer_syntax))

    def __init__(self, folder: str, header: bytes = b"", tag: str = "") -> None:
        self._handle, self.path = _create(folder, partial_prefix(tag))
        self.header_length = len(header)
        self.size = 0
        #: The first write failure (a full disk, say), kept for the owner: a sink never raises.
        self.error: OSError | None = None
        self._placed = False
        try:
            _write_all(self._handle, header)
        except OSError as exc:
            self.error = exc

    def write(self, fragment: memoryview) -> None:
        if self.error is not None:
            return
        try:
            _write_all(self._handle, fragment)
            self.size += len(fragment)
        except OSError as exc:
            self.error = exc

    def finish(self) -> None:
        """All fragments are in: close (a failure is kept in :attr:`error`)."""
        if self._handle < 0:
            return
        handle, self._handle = self._handle, -1
        try:
            os.close(handle)
        except OSError as exc:
            self.error = self.error or exc

    def discard(self) -> None:
        """Drop the file (the instance was refused, or never arrived whole); nothing once it is placed."""
        self.finish()
        if not self._placed:
            discard(self.path)

    @contextmanager
    def mapped(self) -> Iterator[memoryview]:
        """What was written after the header, read through a memory map for the duration of the block."""
        self.finish()
        with open(self.path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:  # pragma: no cover - the file meta is always there
                yield memoryview(b"")
                return
            mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            whole = memoryview(mapped)
            dataset = whole[self.header_length:]
            try:
                yield dataset
            finally:
                try:
                    dataset.release()
                    whole.release()
                    mapped.close()
                except BufferError:  # a view still held somewhere (an exception's frame): closed when freed
                    pass

    def with_even_fragments(self, offsets: list[int], little: bool) -> "Spool":
        """A new spool beside this one holding the same file with the pixel data fragments whose item headers
        are at `offsets` (in the data set) padded to an even length with one NUL (PS3.5 A.4), copied by reads
        (file pages are no part of our memory); see :func:`~dicomscu.files.probe.even_fragments`."""
        import struct

        order = "<" if little else ">"
        copy = Spool(os.path.dirname(self.path))
        copy.header_length = self.header_length
        with open(self.path, "rb") as source:

            def copy_until(end: int) -> None:
                while source.tell() < end and copy.error is None:
                    block = source.read(min(1 << 20, end - source.tell()))
                    if not block:
                        break
                    copy.write(memoryview(block))

            for offset in sorted(offsets):
                copy_until(self.header_length + offset + 4)
                (length,) = struct.unpack(order + "L", source.read(4))
                copy.write(memoryview(struct.pack(order + "L", length + 1)))
                copy_until(source.tell() + length)
                copy.write(memoryview(b"\0"))
            copy_until(os.fstat(source.fileno()).st_size)
        copy.size -= self.header_length  # (the header counted in size is not data set: as for this spool)
        copy.finish()
        return copy

    def place(self, path: str) -> None:
        """Rename the file to `path` (its folders made when missing): the instance is stored.  Raises the write
        failure, if any (a full disk shows at the last flush): a cut file is never put in place."""
        self.finish()
        if self.error is not None:
            raise self.error
        try:
            os.replace(self.path, path)
        except FileNotFoundError:  # a series' first file: its folders are made now
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.replace(self.path, path)
        self._placed = True
