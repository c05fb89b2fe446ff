"""Per-draw CLV of every value row, kept for the tier probabilities: in memory when small, else in a temporary file.

Filled by `clv.bayes.predict.value_posterior`; the tier probabilities (`clv.tiers.tier_probabilities`) read
the draws twice: draw by draw (each draw's cut-offs are order statistics over all customers) and row by row
(each customer's tier in every draw). A memory-mapped (rows, draws) array made the first read stride through
the whole file once per few draws, and its pages counted in the process's resident memory (2 GB for 1M
customers x 500 draws). Here a large store is a file in draws-major order, written with `os.pwrite` and read
with `os.pread`: a draw is one contiguous read, a block of rows one read per draw, and the file's pages are the
operating system's cache, not the process's memory. Values are float32 (a CLV to 7 significant digits: the
tiers compare them, nothing sums them).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["DrawStore"]

#: stores larger than this go to a temporary file
IN_MEMORY_BYTES = 256 * 2**20


class DrawStore:
    """(rows, draws) float32 values, written in blocks of contiguous rows and read by rows or by draws."""

    def __init__(self, rows: int, draws: int, in_memory_bytes: int | None = None) -> None:
        self.shape = (rows, draws)
        limit = IN_MEMORY_BYTES if in_memory_bytes is None else in_memory_bytes
        self._array: NDArray[np.float32] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._fd = -1
        if rows * draws * 4 <= limit:
            self._array = np.zeros((rows, draws), dtype=np.float32)
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="clv-draws-")
        path = Path(self._tmp.name) / "clv_draws.f32"
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self._fd, rows * draws * 4)

    @classmethod
    def of(cls, values: NDArray[np.floating]) -> DrawStore:
        """An in-memory store holding `values` (rows, draws)."""
        store = cls(0, 0)
        store.shape = (int(values.shape[0]), int(values.shape[1]))
        store._array = np.asarray(values, dtype=np.float32)
        return store

    def write(self, r0: int, values: NDArray[np.floating]) -> None:
        """Rows r0 .. r0 + len(values) (every draw)."""
        if self._array is not None:
            self._array[r0 : r0 + values.shape[0]] = values
            return
        rows = self.shape[0]
        by_draw = np.ascontiguousarray(np.asarray(values, dtype=np.float32).T)
        for d in range(by_draw.shape[0]):
            os.pwrite(self._fd, by_draw[d].tobytes(), (d * rows + r0) * 4)

    def _read(self, size: int, offset: int) -> NDArray[np.float32]:
        chunks, done = [], 0
        while done < size:  # a read may return less than asked
            chunk = os.pread(self._fd, size - done, offset + done)
            if not chunk:
                raise OSError(f"the CLV draws file ended at byte {offset + done}, {size - done} bytes short")
            chunks.append(chunk)
            done += len(chunk)
        return np.frombuffer(b"".join(chunks) if len(chunks) > 1 else chunks[0], dtype=np.float32)

    def read_rows(self, r0: int, r1: int) -> NDArray[np.float32]:
        """Rows r0 .. r1, shape (r1 - r0, draws)."""
        if self._array is not None:
            return self._array[r0:r1]
        rows, draws = self.shape
        out = np.empty((draws, r1 - r0), dtype=np.float32)
        for d in range(draws):
            out[d] = self._read((r1 - r0) * 4, (d * rows + r0) * 4)
        return out.T

    def read_draws(self, d0: int, d1: int) -> NDArray[np.float32]:
        """Draws d0 .. d1 of every row, shape (d1 - d0, rows)."""
        if self._array is not None:
            return np.ascontiguousarray(self._array[:, d0:d1].T)
        rows = self.shape[0]
        return self._read((d1 - d0) * rows * 4, d0 * rows * 4).reshape(d1 - d0, rows)

    def to_array(self) -> NDArray[np.float32]:
        """All values, (rows, draws) (in memory: for tests and small data)."""
        return np.ascontiguousarray(self.read_draws(0, self.shape[1]).T)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __del__(self) -> None:
        self.close()
