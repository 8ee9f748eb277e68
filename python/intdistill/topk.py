"""Top-k over score matrices: ``topk(scores, k)``, the ``k`` best columns per row, best first.

Thin, validating layer over ``intdistill._core`` (``rust/src/topk.rs``, whose module doc is the full
specification). The work runs in Rust with the GIL released, rayon across rows. **Equal scores by lower
column first**, so a row equals ``np.argsort(-s, kind="stable")[:k]`` (``largest=False``:
``np.argsort(s, kind="stable")[:k]``). ``-0.0`` ties with ``0.0``; ``±inf`` are ordinary scores; **NaN
raises** ``ValueError`` naming the first NaN's row and column. Selection, not a full sort: ``O(n)`` per row
plus ``O(k log k)``.
"""

from __future__ import annotations

import operator
from typing import Any, NamedTuple

import numpy as np

from intdistill import _core

__all__ = ["TopK", "topk"]

_I64_MAX = 2**63 - 1


class TopK(NamedTuple):
    """``idx`` int64 ``(nq, k)`` column indices, best first; ``vals`` ``(nq, k)`` their scores (float32 for float32
    or float16 input, float64 otherwise). 1-D input gives 1-D ``(k,)`` outputs."""

    idx: np.ndarray
    vals: np.ndarray


def _int(value: Any, what: str, *, lo: int, hi: int = _I64_MAX, none_ok: bool = False) -> int | None:
    if value is None and none_ok:
        return None
    expected = f"an int in [{lo}, {hi}]" + (" or None" if none_ok else "")
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{what}: expected {expected}, got bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{what}: expected {expected}, got {type(value).__name__} {value!r}") from None
    if not lo <= v <= hi:
        raise ValueError(f"{what}: expected {expected}, got {v}")
    return v


def topk(scores: Any, k: int, *, largest: bool = True) -> TopK:
    """The ``k`` best columns of each row of ``scores`` (``(nq, n)`` or ``(n,)``), best first.

    Ties: lower column first (a stable sort's prefix). float32 and float64 are used as they are; float16
    becomes float32; integer and bool scores become float64 (exact below 2**53). Non-contiguous input is
    copied. ``1 <= k <= n``. NaN raises ``ValueError`` naming its row and column.
    """
    if not isinstance(largest, (bool, np.bool_)):
        raise ValueError(f"largest: expected a bool, got {type(largest).__name__}")
    s = np.asarray(scores)
    if s.dtype.kind not in "fiub":
        raise ValueError(f"scores: expected a real numeric array, got dtype {s.dtype}")
    if s.ndim not in (1, 2):
        raise ValueError(f"scores: expected a 1-D or 2-D array, got shape {s.shape}")
    n = s.shape[-1]
    if n == 0:
        raise ValueError(f"scores: expected at least one column, got shape {s.shape}")
    k = _int(k, "k", lo=1, hi=n)
    if s.dtype == np.float16:
        s = s.astype(np.float32)
    elif s.dtype not in (np.float32, np.float64):
        s = s.astype(np.float64)
    one_row = s.ndim == 1
    s = np.ascontiguousarray(s[None, :] if one_row else s)
    idx, vals = _core.topk(s, k, largest=bool(largest))
    if one_row:
        return TopK(idx[0], vals[0])
    return TopK(idx, vals)
