"""Batching: top-k over score matrices, mined candidate ids -> padded arrays, length bucketing.

Thin, validating layer over ``intdistill._core`` (``rust/src/batching.rs``, whose module doc is the full
specification). Everything heavy runs in Rust with the GIL released, rayon across rows.

- ``topk(scores, k)``: the ``k`` best columns per row, best first; **equal scores by lower column first**,
  so a row equals ``np.argsort(-s, kind="stable")[:k]`` (``largest=False``: ``np.argsort(s, kind="stable")[:k]``).
  ``-0.0`` ties with ``0.0``; ``±inf`` are ordinary scores; **NaN raises** ``ValueError`` naming the first NaN's
  row and column. Selection, not a full sort: ``O(n)`` per row plus ``O(k log k)``.
- ``pad_candidates(lists, n)``: per row drop excluded ids (e.g. the query's positives), drop repeats (first
  occurrence kept), cut to ``n``, pad; ``mask`` marks real entries.
- ``length_buckets(lengths, max_tokens)``: token-budgeted batches cut from the length-sorted order
  (``len(batch) * max length <= max_tokens``); ``padding_stats`` measures what padding costs.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from intdistill import _core

__all__ = [
    "PadStats",
    "PaddedCandidates",
    "PaddingStats",
    "TopK",
    "length_buckets",
    "pad_candidates",
    "padding_stats",
    "topk",
]

_U64_MAX = 2**64 - 1
_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


class TopK(NamedTuple):
    """``idx`` int64 ``(nq, k)`` column indices, best first; ``vals`` ``(nq, k)`` their scores (float32 for float32
    or float16 input, float64 otherwise). 1-D input gives 1-D ``(k,)`` outputs."""

    idx: np.ndarray
    vals: np.ndarray


@dataclass(frozen=True)
class PadStats:
    """What ``pad_candidates`` dropped, summed over rows.

    ``duplicates``: repeats of an id already kept in its row; ``excluded``: occurrences of excluded ids;
    ``truncated``: distinct, non-excluded ids cut because a row had more than ``n``; ``short_rows``: rows with
    fewer than ``n`` ids kept (so padded)."""

    duplicates: int
    excluded: int
    truncated: int
    short_rows: int


class PaddedCandidates(NamedTuple):
    """``idx`` int64 ``(B, n)`` candidate ids, ``pad`` where ``mask`` (bool ``(B, n)``) is False; ``stats``."""

    idx: np.ndarray
    mask: np.ndarray
    stats: PadStats


class PaddingStats(NamedTuple):
    """``real_tokens = Σ_b Σ_{i∈b} lengths[i]``; ``padded_tokens = Σ_b len(b) · max_{i∈b} lengths[i]``."""

    real_tokens: int
    padded_tokens: int

    @property
    def padding(self) -> int:
        """Pad tokens: ``padded_tokens - real_tokens``."""
        return self.padded_tokens - self.real_tokens

    @property
    def efficiency(self) -> float:
        """``real_tokens / padded_tokens`` (1.0 when nothing is batched)."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0


def _int(value: Any, what: str, *, lo: int, hi: int = _I64_MAX, none_ok: bool = False) -> Optional[int]:
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


def _ids_arg(obj: Any, what: str) -> Any:
    """2-D integer arrays become C-contiguous int64; anything else goes to Rust as is (it names bad items)."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "iu" or obj.ndim != 2:
            if obj.dtype == object and obj.ndim == 1:
                return list(obj)
            raise ValueError(f"{what}: expected a 2-D integer array or a list of id lists, got {obj.dtype} array of shape {obj.shape}")
        return np.ascontiguousarray(obj, dtype=np.int64)
    if isinstance(obj, (str, bytes)):
        raise ValueError(f"{what}: expected a list of id lists, got {type(obj).__name__}")
    return obj


def pad_candidates(
    lists: Sequence[Sequence[int]] | np.ndarray,
    n: Optional[int] = None,
    *,
    exclude: Optional[Sequence[Sequence[int]]] = None,
    pad: int = -1,
) -> PaddedCandidates:
    """Candidate id rows (e.g. mined ids per query, best first) -> padded ``(B, n)`` arrays.

    Per row, in order: ids in ``exclude[row]`` are dropped (every occurrence), repeats of a kept id are dropped
    (first occurrences keep their order), the rest is cut to ``n`` (``None``: the longest filtered row) and
    padded with ``pad`` (``mask`` False). Rows: lists/tuples of ints or 1-D int64 arrays; a 2-D integer array
    works too. Ids must be ``>= 0``. ``exclude`` has one row per candidate row.
    """
    n = _int(n, "n", lo=0, none_ok=True)
    pad = _int(pad, "pad", lo=_I64_MIN)
    lists = _ids_arg(lists, "lists")
    if exclude is not None:
        exclude = _ids_arg(exclude, "exclude")
    idx, mask, st = _core.pad_candidates(lists, n, exclude=exclude, pad=pad)
    return PaddedCandidates(idx, mask, PadStats(st["duplicates"], st["excluded"], st["truncated"], st["short_rows"]))


def _lengths(lengths: Any) -> np.ndarray:
    a = np.asarray(lengths)
    if a.ndim != 1:
        raise ValueError(f"lengths: expected a 1-D array of token counts, got shape {a.shape}")
    if a.size and a.dtype.kind not in "iu":
        raise ValueError(f"lengths: expected integer token counts, got dtype {a.dtype}")
    if a.dtype == np.uint64 and a.size and a.max() > _I64_MAX:
        raise ValueError(f"lengths: expected values <= {_I64_MAX}, got {a.max()}")
    a = np.ascontiguousarray(a, dtype=np.int64)
    if a.size and a.min() < 0:
        i = int(np.argmin(a))
        raise ValueError(f"lengths[{i}]: expected a token count >= 0, got {a[i]}")
    return a


def length_buckets(
    lengths: Any,
    max_tokens: int,
    *,
    max_batch: Optional[int] = None,
    shuffle_seed: Optional[int] = None,
) -> list[np.ndarray]:
    """Token-budgeted batches of example indices (int64 arrays); every index appears exactly once.

    Indices are stably sorted by length (ascending) and cut greedily: an example joins the current batch while
    ``(len(batch) + 1) * its length <= max_tokens`` and ``len(batch) + 1 <= max_batch`` (greedy gives the fewest
    batches among contiguous cuts of the sorted order). An example longer than ``max_tokens`` is a batch of its
    own: it fits nowhere, and the caller decides (truncate it, or skip it). With ``shuffle_seed``
    (``0 <= seed < 2**64``) the examples within each run of equal length, and then the order of the batches, are
    shuffled deterministically (SplitMix64); padding is the same as without a seed.
    """
    a = _lengths(lengths)
    max_tokens = _int(max_tokens, "max_tokens", lo=1)
    max_batch = _int(max_batch, "max_batch", lo=1, none_ok=True)
    shuffle_seed = _int(shuffle_seed, "shuffle_seed", lo=0, hi=_U64_MAX, none_ok=True)
    return _core.length_buckets(a, max_tokens, max_batch=max_batch, shuffle_seed=shuffle_seed)


def padding_stats(lengths: Any, batches: Sequence[Sequence[int]]) -> PaddingStats:
    """Real vs padded token counts of ``batches`` (lists or int64 arrays of indices into ``lengths``).

    ``real_tokens = Σ_b Σ_{i∈b} lengths[i]``, ``padded_tokens = Σ_b len(b) · max_{i∈b} lengths[i]``; an empty
    batch counts 0. Compare two batchings of the same data by ``padded_tokens`` or ``efficiency``.
    """
    a = _lengths(lengths)
    if isinstance(batches, np.ndarray) and batches.ndim == 2:
        batches = np.ascontiguousarray(batches, dtype=np.int64)
    real, padded = _core.padding_stats(a, batches)
    return PaddingStats(real, padded)
