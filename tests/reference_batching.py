"""Pure-Python / numpy references for rust/src/batching.rs (slow, obviously correct)."""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1


def topk(scores: np.ndarray, k: int, largest: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A stable sort's prefix: ``np.argsort(-s, kind="stable")[:k]`` per row (``s`` for smallest)."""
    s = np.asarray(scores)
    key = -s if largest else s
    idx = np.argsort(key, axis=1, kind="stable")[:, :k].astype(np.int64)
    return idx, np.take_along_axis(s, idx, axis=1)


def pad_candidates(lists, n, exclude=None, pad=-1):
    """Row by row: excluded ids out (every occurrence), repeats out, cut to n, pad. Returns (idx, mask, stats)."""
    stats = {"duplicates": 0, "excluded": 0, "truncated": 0, "short_rows": 0}
    kept_rows = []
    for r, row in enumerate(lists):
        ex = set(exclude[r]) if exclude is not None else set()
        kept, seen = [], set()
        for i in row:
            i = int(i)
            if i in ex:
                stats["excluded"] += 1
            elif i in seen:
                stats["duplicates"] += 1
            else:
                seen.add(i)
                kept.append(i)
        kept_rows.append(kept)
    width = max((len(k) for k in kept_rows), default=0) if n is None else n
    idx = np.full((len(kept_rows), width), pad, dtype=np.int64)
    mask = np.zeros((len(kept_rows), width), dtype=bool)
    for r, kept in enumerate(kept_rows):
        stats["truncated"] += max(0, len(kept) - width)
        stats["short_rows"] += int(len(kept) < width)
        m = min(len(kept), width)
        idx[r, :m] = kept[:m]
        mask[r, :m] = True
    return idx, mask, stats


class SplitMix64:
    """SplitMix64 with Lemire's unbiased bounded integers and back-to-front Fisher-Yates."""

    def __init__(self, seed: int):
        self.state = seed & MASK64

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, s: int) -> int:
        m = self.next_u64() * s
        if (m & MASK64) < s:
            t = (-s % (1 << 64)) % s
            while (m & MASK64) < t:
                m = self.next_u64() * s
        return m >> 64

    def shuffle(self, v: list) -> None:
        for i in range(len(v) - 1, 0, -1):
            j = self.below(i + 1)
            v[i], v[j] = v[j], v[i]


def length_buckets(lengths, max_tokens, max_batch=None, shuffle_seed=None) -> list[list[int]]:
    """Stable sort by length, shuffle equal runs (seeded), greedy cuts, shuffle batch order (seeded)."""
    lengths = [int(x) for x in lengths]
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    rng = SplitMix64(shuffle_seed) if shuffle_seed is not None else None
    if rng is not None:
        s = 0
        while s < len(order):
            e = s
            while e < len(order) and lengths[order[e]] == lengths[order[s]]:
                e += 1
            run = order[s:e]
            rng.shuffle(run)
            order[s:e] = run
            s = e
    batches, cur = [], []
    for i in order:
        fits = (len(cur) + 1) * lengths[i] <= max_tokens
        if cur and (not fits or (max_batch is not None and len(cur) >= max_batch)):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def padding_stats(lengths, batches) -> tuple[int, int]:
    real = sum(int(lengths[i]) for b in batches for i in b)
    padded = sum(len(b) * max((int(lengths[i]) for i in b), default=0) for b in batches)
    return real, padded
