"""Row storage for patch embeddings that spills to a temporary file past a memory budget."""

from __future__ import annotations

import os
import tempfile

import numpy as np


class EmbeddingStore:
    """Append N x D float32 chunks; gather rows by index at the end.

    Rows stay in memory until ``budget_mb`` is exceeded; then everything goes to a raw
    float32 file in the temp directory (read back through a memmap), so fitting on tens
    of thousands of images keeps only the projected features in memory.
    """

    def __init__(self, budget_mb: float) -> None:
        self.budget = float(budget_mb) * 2**20
        self.dim: int | None = None
        self.rows = 0
        self._chunks: list[np.ndarray] = []
        self._file = None
        self._path: str | None = None

    @property
    def spilled(self) -> bool:
        return self._file is not None

    def append(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        if self.dim is None:
            self.dim = chunk.shape[1]
        self.rows += len(chunk)
        if self._file is None and self.rows * self.dim * 4 > self.budget:
            fd, self._path = tempfile.mkstemp(prefix="pyimgano-embeddings-", suffix=".f32")
            self._file = os.fdopen(fd, "wb")
            for old in self._chunks:
                old.tofile(self._file)
            self._chunks = []
        if self._file is not None:
            chunk.tofile(self._file)
        else:
            self._chunks.append(chunk)

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """The rows at ``indices``, in that order. A run of consecutive rows held in memory comes
        back as a view of the appended chunk holding it (out-of-fold scoring reads the fit's
        batches back in order: no copy; callers read rows, never write them)."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= self.rows):
            raise IndexError(f"row indices must be in [0, {self.rows}), got {indices.min()}..{indices.max()}")
        if self._file is None:
            starts = np.cumsum([0] + [len(chunk) for chunk in self._chunks])
            which = np.searchsorted(starts, indices, side="right") - 1  # the chunk holding each row
            if len(indices) and which[0] == which[-1] and bool((np.diff(indices) == 1).all()):
                first = indices[0] - starts[which[0]]
                return self._chunks[which[0]][first : first + len(indices)]
            # each row read from the chunk holding it: the chunks are never joined (a fresh copy
            # of every row, hundreds of megabytes, to read back a few of them)
            out = np.empty((len(indices), self.dim or 0), dtype=np.float32)
            for c in np.unique(which):
                at = np.flatnonzero(which == c)
                out[at] = self._chunks[c][indices[at] - starts[c]]
            return out
        self._file.flush()
        data = np.memmap(self._path, dtype=np.float32, mode="r", shape=(self.rows, self.dim))
        order = np.argsort(indices)
        out = np.empty((len(indices), self.dim), dtype=np.float32)
        out[order] = data[indices[order]]
        del data
        return out

    def close(self) -> None:
        self._chunks = []
        if self._file is not None:
            self._file.close()
            os.unlink(self._path)
            self._file = None
            self._path = None
