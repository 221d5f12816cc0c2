"""Arrays a fit keeps on disk while it reads more rows than its memory bound holds.

They go to one file in PostgreSQL's temporary directory (``pgsql_tmp`` of the
first of ``temp_tablespaces`` the caller may use, else of the data directory,
the backend's working directory), created without a name
(``tempfile.TemporaryFile``: O_TMPFILE, or unlinked at once): nothing else can
open it, and its space returns to the file system when the fit closes it or
the backend exits, however it exits. ``temp_file_limit`` bounds it as it
bounds PostgreSQL's own temporary files.
"""
from __future__ import annotations

import errno
import os
import tempfile

import numpy as np

from . import errors
from .quality import ArrayRun

DEFAULT_DIR = os.path.join("base", "pgsql_tmp")


DEFAULT_TABLESPACE = 1663   # pg_default: the data directory's base/


def temp_dir(tablespace: int | None, major: int) -> str:
    """``pgsql_tmp`` of a tablespace (its directory of this major), or of the data directory."""
    if tablespace is None or tablespace == DEFAULT_TABLESPACE:
        return DEFAULT_DIR
    root = os.path.join("pg_tblspc", str(tablespace))
    try:
        versions = sorted(d for d in os.listdir(root) if d.startswith(f"PG_{major}_"))
    except OSError as e:
        raise _refusal(e) from None
    if not versions:
        raise errors.Refusal(errors.IO_ERROR, f"tablespace {tablespace} has no directory for PostgreSQL {major}")
    return os.path.join(root, versions[-1], "pgsql_tmp")


class Spill:
    def __init__(self, directory: str = DEFAULT_DIR, limit: int | None = None, check=None,
                 beside: "Spill | None" = None):
        self.directory = directory
        self.limit = limit    # bytes (temp_file_limit), None: no limit
        self.check = check    # called before each read: a cancel is acted on only inside the server's calls
        self.beside = beside  # the fit's other file, counted against the limit while it is open
        self.bytes = 0
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self.file = tempfile.TemporaryFile(dir=directory)
        except OSError as e:
            raise _refusal(e) from None

    def put(self, arrays: list[np.ndarray]) -> "Stored":
        """Append arrays (one-dimensional) to the file."""
        layout = []
        size = sum(np.asarray(a).nbytes for a in arrays)
        if self.limit is not None and (self.beside.held if self.beside else 0) + self.bytes + size > self.limit:
            raise errors.Refusal(errors.CONFIGURATION_LIMIT_EXCEEDED,
                                 f"the fit's temporary file would exceed temp_file_limit ({self.limit // 1024}kB)",
                                 hint="Raise temp_file_limit, or woe_anchor.fit_memory to hold more rows in memory.")
        try:
            for a in arrays:
                a = np.ascontiguousarray(a)
                layout.append((self.bytes, a.dtype.str, len(a)))
                # the file's own write (not numpy's tofile): a full disk raises ENOSPC, nothing is lost unsaid
                self.file.write(memoryview(a).cast("B"))
                self.bytes += a.nbytes
            self.file.flush()
        except OSError as e:
            raise _refusal(e) from None
        return Stored(self, tuple(layout))

    @property
    def held(self) -> int:
        """Bytes of disk the file holds: none once closed."""
        return 0 if self.file.closed else self.bytes

    def successor(self) -> "Spill":
        """A second file, for what the fit keeps once this one's arrays are read for the last time:
        held to temp_file_limit together with this one until this one closes, so the two never
        hold more than one file may."""
        return Spill(self.directory, self.limit, self.check, beside=self)

    def read(self, offset: int, size: int) -> bytes:
        if self.check is not None:
            self.check()
        parts = []
        while size > 0:
            part = os.pread(self.file.fileno(), size, offset)
            if not part:
                raise errors.Refusal(errors.IO_ERROR, f"the fit's temporary file ended {size} bytes early")
            parts.append(part)
            offset, size = offset + len(part), size - len(part)
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass   # a last flush that fails (a full disk) loses nothing: the file is discarded


def _refusal(e: OSError) -> errors.Refusal:
    if e.errno == errno.ENOSPC:
        return errors.Refusal(errors.DISK_FULL, "could not write the fit's temporary file: no space left on device",
                              hint="Free space in the temporary directory, or set temp_tablespaces.")
    return errors.Refusal(errors.IO_ERROR, f"could not use the fit's temporary file: {e.strerror or e}")


class Stored:
    """Arrays written by ``Spill.put``: all of them, or a slice of one, read back."""

    def __init__(self, spill: Spill, layout: tuple):
        self.spill, self.layout = spill, layout

    def load(self) -> list[np.ndarray]:
        return [self.part(i) for i in range(len(self.layout))]

    def part(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        offset, dtype, n = self.layout[i]
        kind = np.dtype(dtype)
        start, stop = min(start, n), n if stop is None else min(stop, n)
        data = self.spill.read(offset + start * kind.itemsize, (stop - start) * kind.itemsize)
        return np.frombuffer(data, dtype=kind)


class StoredRun:
    """A run of ``quality.merged`` groups on disk (``quality.merged_runs`` reads it a block at a time)."""

    def __init__(self, stored: Stored):
        self.stored = stored

    def __len__(self):
        return self.stored.layout[0][2]

    def read(self, start: int, stop: int) -> tuple:
        return tuple(self.stored.part(i, start, stop) for i in range(3))


class Kept:
    """Lists of arrays, one per chunk of rows, kept in memory (``spill`` None) or on disk, and read
    back in order as often as needed."""

    def __init__(self, spill: Spill | None):
        self.spill, self.items = spill, []

    def append(self, arrays: list[np.ndarray]) -> None:
        self.items.append(list(arrays) if self.spill is None else self.spill.put(arrays))

    def __iter__(self):
        for item in self.items:
            yield item if isinstance(item, list) else item.load()

    def column(self, k: int) -> "Column":
        """The k-th array of every item, readable as often as needed."""
        return Column(self, k)

    def runs(self) -> list:
        """Each item as a run of ``quality.merged`` groups."""
        return [ArrayRun(*item) if isinstance(item, list) else StoredRun(item) for item in self.items]


class Column:
    def __init__(self, kept: Kept, k: int):
        self.kept, self.k = kept, k

    def __iter__(self):
        return (arrays[self.k] for arrays in self.kept)
