"""Turn the paths a user typed into a stream of files, reporting what cannot be used.

Yields lazily (a directory of a million files is never listed into memory as
paths of ours beyond one directory at a time), in a stable order (sorted names),
and each problem exactly once: missing paths, broken symbolic links, unreadable
directories, directory loops met through symbolic links with ``-r``, devices, pipes
and sockets, and a folder of folders given without ``-r``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Iterable, Iterator, Union

from dicomscu.errors import UsageError


@dataclass(frozen=True)
class InputProblem:
    """A path that cannot be used, and why (one line)."""

    path: str
    reason: str


Entry = Union[str, InputProblem]
NOT_REGULAR = "not a regular file (device, socket or pipe): skipped"


#: What the API takes for files: one path, or a sequence of them (a string is one path, never its characters).
Paths = Union[str, "os.PathLike[str]", Iterable[Union[str, "os.PathLike[str]"]]]


def as_paths(paths: Paths) -> list[str]:
    """`paths` as a list of path strings: a single path is one path (``store(peer, "study/")`` sends the
    folder, not the characters of its name); anything else than paths is a usage error."""
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    if isinstance(paths, (bytes, bytearray)):
        raise UsageError("paths: give text paths (str or os.PathLike), not bytes")
    try:
        items = list(paths)
    except TypeError:
        raise UsageError(f"paths: expected a path or a sequence of paths, not {type(paths).__name__}") from None
    result = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise UsageError(f"paths: expected a path or a sequence of paths, found a {type(item).__name__}")
        result.append(os.fspath(item))
    return result


def expand(paths: Paths, recursive: bool = False) -> Iterator[Entry]:
    """Yield file paths (str) and :class:`InputProblem` for `paths`.

    A directory contributes its regular files; with `recursive` also those of its
    subdirectories, at any depth, each directory visited once.
    """
    seen_dirs: set[tuple[int, int]] = set()
    for path in as_paths(paths):
        try:
            info = os.stat(path)
        except OSError as exc:
            yield InputProblem(path, _stat_problem(path, exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from _directory(path, info, recursive, seen_dirs)
        elif stat.S_ISREG(info.st_mode):
            yield path
        else:
            yield InputProblem(path, NOT_REGULAR)


def _stat_problem(path: str, exc: OSError) -> str:
    if os.path.islink(path):
        return "broken symbolic link (its target does not exist)"
    if isinstance(exc, FileNotFoundError):
        return "no such file or directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return exc.strerror or str(exc)


def _directory(
    path: str, info: os.stat_result, recursive: bool, seen: set[tuple[int, int]]
) -> Iterator[Entry]:
    key = (info.st_dev, info.st_ino)
    if key in seen:
        yield InputProblem(path, "directory loop: this directory was already visited (symbolic link)")
        return
    seen.add(key)
    try:
        with os.scandir(path) as listing:
            names = sorted(entry.name for entry in listing)
    except OSError as exc:
        yield InputProblem(path, f"cannot list directory: {exc.strerror or exc}")
        return
    subdirs = []
    files = 0
    for name in names:
        child = os.path.join(path, name)
        try:
            child_info = os.stat(child)
        except OSError as exc:
            yield InputProblem(child, _stat_problem(child, exc))
            continue
        if stat.S_ISREG(child_info.st_mode):
            files += 1
            yield child
        elif stat.S_ISDIR(child_info.st_mode):
            subdirs.append((child, child_info))
        else:
            yield InputProblem(child, NOT_REGULAR)
    if not recursive:
        if subdirs and not files:
            yield InputProblem(path, f"holds {len(subdirs)} folder(s) and no file: add -r to send what they hold")
        return
    for child, child_info in subdirs:
        yield from _directory(child, child_info, recursive, seen)
