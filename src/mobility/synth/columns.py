"""A column kept as (pool of values, row -> pool index) so rows are cheap to reorder and to corrupt."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class Column:
    """Row i holds ``pool[idx[i]]``, or null when ``idx[i] < 0``."""

    def __init__(self, pool: pa.Array, idx: np.ndarray):
        self.pool = pool
        self.idx = np.array(idx, dtype=np.int64)  # a copy: columns built from one index must not share it

    @classmethod
    def of(cls, values, type: pa.DataType | None = None, null: np.ndarray | None = None) -> "Column":
        pool = values if isinstance(values, pa.Array) else pa.array(values, type=type)
        idx = np.arange(len(pool), dtype=np.int64)
        return cls(pool, idx if null is None else np.where(null, -1, idx))

    @classmethod
    def pick(cls, pool, idx: np.ndarray, type: pa.DataType | None = None) -> "Column":
        return cls(pool if isinstance(pool, pa.Array) else pa.array(pool, type=type), idx)

    def __len__(self) -> int:
        return len(self.idx)

    def values(self, rows: np.ndarray) -> list:
        return self.build(np.asarray(rows)).to_pylist()

    def set(self, rows: np.ndarray, values) -> None:
        """Rows get new values (None makes them null)."""
        values = list(values)
        fresh = pa.array([v for v in values if v is not None], type=self.pool.type)
        base = len(self.pool)
        self.pool = pa.concat_arrays([self.pool, fresh]) if len(fresh) else self.pool
        position = np.cumsum([v is not None for v in values]) - 1
        self.idx[rows] = [base + k if v is not None else -1 for v, k in zip(values, position)]

    def build(self, order: np.ndarray | None = None) -> pa.Array:
        idx = self.idx if order is None else self.idx[order]
        return pc.take(self.pool, pa.array(idx, mask=idx < 0))
