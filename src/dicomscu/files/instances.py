"""Writing retrieved instances to disk: complete files only, never outside the output directory.

Each instance arrives as an encoded data set in the transfer syntax of its
presentation context.  It is checked whole (:func:`probe.top_level_values`),
given a file meta, written to a temporary name in the output directory and
renamed: an aborted association or a killed process can leave a ``.part`` file
behind, never a truncated ``.dcm``.  (No fsync per file: that would cost
milliseconds per instance; the guarantee is against aborts, not power loss.)  Names come from UIDs and IDs sent by the peer, so
they are sanitized first: a hostile SOP Instance UID such as ``../../etc/x``
becomes a harmless file name inside the directory.
"""

from __future__ import annotations

import hashlib
import logging
import errno
import functools
import itertools
import os
import re
import struct
import tempfile
from dataclasses import dataclass

from dicomscu.uids import IMPLEMENTATION_CLASS

from dicomscu.errors import UsageError
from dicomscu.files.probe import BadFile, top_level_values, valid_uid

PATIENT_ID, STUDY_UID, SERIES_UID = 0x00100020, 0x0020000D, 0x0020000E
LAYOUTS = ("flat", "hierarchical", "study")
IMPLEMENTATION_VERSION = "DICOMSCU"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: Names of files being written (renamed to their final name when whole).
PARTIAL_PREFIX, PARTIAL_SUFFIX = ".dicomscu-", ".part"


def partial_prefix(tag: str = "") -> str:
    """The start of a temporary file's name; `tag` marks one run's files, so that whoever coordinates the
    run (a cluster's client) can remove those a killed worker left, and no one else's."""
    return f"{PARTIAL_PREFIX}{tag}-" if tag else PARTIAL_PREFIX


def _file_mode() -> int:
    """0666 less the umask, as open() would give (mkstemp's 0600 would hide retrieved files from others)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


#: Read once, at import: changing the umask is process-wide, not something to do per file.
FILE_MODE = _file_mode()


def safe_component(value: str, fallback: str) -> str:
    """`value` as one safe path component: UIDs unchanged, anything else cleaned and tagged."""
    if valid_uid(value):
        return value
    cleaned = _UNSAFE.sub("_", value).lstrip(".")[:48]
    if not cleaned:
        return fallback
    if cleaned != value:  # keep distinct inputs distinct after cleaning
        cleaned += "-" + hashlib.sha1(value.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return cleaned


def write_atomically(path: str | os.PathLike, chunks: list, create_folder: bool = True, tag: str = "") -> None:
    """Write `chunks` to a temporary name beside `path`, then rename: `path` only ever holds a whole file.

    Something at `path` that is not a regular file (a device, a FIFO, a directory) is never replaced.
    `tag` marks the temporary name (:func:`partial_prefix`).
    """
    if os.path.lexists(path) and not os.path.isfile(path):
        raise OSError(errno.EEXIST, "exists and is not a regular file: not replaced", str(path))
    folder = os.path.dirname(path)
    try:  # the folder is there for all but a series' first file: made only when missing
        handle, temporary = tempfile.mkstemp(prefix=partial_prefix(tag), suffix=PARTIAL_SUFFIX, dir=folder)
    except FileNotFoundError:
        if not create_folder:
            raise
        os.makedirs(folder, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=partial_prefix(tag), suffix=PARTIAL_SUFFIX, dir=folder)
    try:
        os.fchmod(handle, FILE_MODE)
        with os.fdopen(handle, "wb") as out:
            out.writelines(chunks)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def discard(path: str) -> None:
    """Remove a file that must not stay (a duplicate, or one its index could not record); logged if it stays."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logging.getLogger("dicomscu.files").error("cannot remove %s: %s", path, exc.strerror or exc)


def remove_partial_files(directory: str, tag: str = "", top_only: bool = False) -> list[str]:
    """Remove the temporary files a killed writer left under `directory`: all of them (serve, at start, before
    any writer runs), or those marked with `tag` (a finished run's); in `directory` itself only with
    `top_only` (where serve makes every one of its own)."""
    removed = []
    prefix = partial_prefix(tag)
    walk = os.walk(directory)
    for folder, _, names in (itertools.islice(walk, 1) if top_only else walk):
        for name in names:
            if name.startswith(prefix) and name.endswith(PARTIAL_SUFFIX):
                discard(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
    return removed


def prepare_directory(path: str) -> str:
    """Create `path` if needed (as gdcmscu does) and check it is writable; its real path."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{path}: cannot create the directory: {exc.strerror or exc}", option="output") from None
    if not os.path.isdir(path):
        raise UsageError(f"{path}: not a directory", option="output")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: the directory is not writable", option="output")
    return os.path.realpath(path)


def _meta_element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":
        return struct.pack("<HH2sHL", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    raw = text.encode("ascii", "replace")
    return raw + pad if len(raw) % 2 else raw


def file_header(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, 'DICM' and the file meta group (PS3.10 7.1), encoded directly."""
    body = b"".join([
        _meta_element(0x0001, b"OB", b"\x00\x01"),
        _meta_element(0x0002, b"UI", _padded(sop_class, b"\0")),
        _meta_element(0x0003, b"UI", _padded(sop_instance, b"\0")),
        _meta_element(0x0010, b"UI", _padded(transfer_syntax, b"\0")),
        _meta_element(0x0012, b"UI", _padded(IMPLEMENTATION_CLASS, b"\0")),
        _meta_element(0x0013, b"SH", _padded(IMPLEMENTATION_VERSION, b" ")),
    ])
    return b"\0" * 128 + b"DICM" + _meta_element(0x0000, b"UL", struct.pack("<L", len(body))) + body


@functools.lru_cache(maxsize=4096)
def _inside(directory: str, folder: str) -> bool:
    """Whether `folder`, resolved, is `directory` (resolved) or under it.  Cached: a study's or series' folder
    holds many files, and resolving it walks every component (an lstat each)."""
    return os.path.commonpath([directory, os.path.realpath(folder)]) == directory


@dataclass
class InstanceWriter:
    """Writes instances under `directory` with the chosen `layout`."""

    directory: str
    layout: str = "flat"
    #: Marks the temporary names of this writer's files (:func:`partial_prefix`).
    tag: str = ""

    def __post_init__(self) -> None:
        # Absolute and resolved once: the outside-the-directory check compares real paths (and a relative
        # directory such as ".", RetrieveOptions' default, would not compare with them at all).
        self.directory = os.path.realpath(self.directory)

    def path_for(self, sop_instance: str, patient_id: str = "", study: str = "", series: str = "") -> str:
        name = safe_component(sop_instance, "unnamed") + ".dcm"
        if self.layout == "hierarchical":
            parts = [safe_component(patient_id, "no-patient-id"), safe_component(study, "no-study"),
                     safe_component(series, "no-series"), name]
        elif self.layout == "study":  # the embedded PACS's storage
            parts = [safe_component(study, "no-study"), safe_component(series, "no-series"), name]
        else:
            parts = [name]
        path = os.path.join(self.directory, *parts)
        if not _inside(self.directory, os.path.dirname(path)):
            raise BadFile(f"refusing to write outside {self.directory}")  # defence in depth
        return path

    def exists(self, sop_instance: str, patient_id: str = "", study: str = "", series: str = "") -> bool:
        return os.path.exists(self.path_for(sop_instance, patient_id, study, series))

    def write(self, dataset: bytes | bytearray | memoryview, sop_class: str, sop_instance: str, transfer_syntax: str,
              values: dict[int, str] | None = None) -> str:
        """Write one instance; return its path.  Raises BadFile for an incomplete data set, OSError for I/O.

        `values` (PatientID, Study and Series Instance UIDs) may be given by a caller
        that has already walked the data set; otherwise it is walked here.
        """
        if values is None:
            values = top_level_values(dataset, transfer_syntax, [PATIENT_ID, STUDY_UID, SERIES_UID])
        final = self.path_for(sop_instance, values[PATIENT_ID], values[STUDY_UID], values[SERIES_UID])
        write_atomically(final, [file_header(sop_class, sop_instance, transfer_syntax), dataset], tag=self.tag)
        return final
