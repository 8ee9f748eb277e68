"""Pure-Python / numpy references for rust/src/topk.rs (slow, obviously correct)."""

from __future__ import annotations

import numpy as np

def topk(scores: np.ndarray, k: int, largest: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A stable sort's prefix: ``np.argsort(-s, kind="stable")[:k]`` per row (``s`` for smallest)."""
    s = np.asarray(scores)
    key = -s if largest else s
    idx = np.argsort(key, axis=1, kind="stable")[:, :k].astype(np.int64)
    return idx, np.take_along_axis(s, idx, axis=1)
