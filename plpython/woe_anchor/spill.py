"""Arrays a fit keeps on disk while it reads more rows than its memory bound holds.

They go to one file in PostgreSQL's own temporary directory (``base/pgsql_tmp``
of the data directory, the backend's working directory), created without a
name (``tempfile.TemporaryFile``: O_TMPFILE, or unlinked at once): nothing
else can open it, and its space returns to the file system when the fit
closes it or the backend exits, however it exits.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from .quality import ArrayRun

TEMP_DIR = os.path.join("base", "pgsql_tmp")


class Spill:
    def __init__(self):
        os.makedirs(TEMP_DIR, mode=0o700, exist_ok=True)
        self.file = tempfile.TemporaryFile(dir=TEMP_DIR)
        self.bytes = 0

    def put(self, arrays: list[np.ndarray]) -> "Stored":
        """Append arrays (one-dimensional) to the file."""
        layout = []
        for a in arrays:
            a = np.ascontiguousarray(a)
            layout.append((self.bytes, a.dtype.str, len(a)))
            a.tofile(self.file)
            self.bytes += a.nbytes
        self.file.flush()
        return Stored(self, tuple(layout))

    def read(self, offset: int, size: int) -> bytes:
        parts = []
        while size > 0:
            part = os.pread(self.file.fileno(), size, offset)
            if not part:
                raise OSError(f"the fit's temporary file ended {size} bytes early")
            parts.append(part)
            offset, size = offset + len(part), size - len(part)
        return b"".join(parts) if len(parts) != 1 else parts[0]

    def close(self) -> None:
        self.file.close()


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
