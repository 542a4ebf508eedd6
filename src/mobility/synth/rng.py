"""Named, independent random streams derived from one seed.

Each part of the generator draws from its own PCG64 stream keyed by a name (and a month or
chunk number), so changing how many events are drawn never shifts the population or the cells.
"""

from __future__ import annotations

import zlib

import numpy as np


def stream(seed: int, name: str, *key: int) -> np.random.Generator:
    """A PCG64 generator for (seed, name, key...); same arguments, same draws."""
    spawn_key = (zlib.crc32(name.encode("ascii")), *(int(k) for k in key))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=spawn_key)))
