"""Top-k against its numpy / torch peers, same inputs, same run.

    PYTHONPATH=python python benches/bench_topk.py [--nq 2000] [--n 100000] [--k 100] [--seed 0]

``_core.topk`` (Rust, rayon across rows) on a float32 ``(nq, n)`` standard-normal matrix vs
``np.argpartition`` + a sort of the k (``np.lexsort`` by score desc, column asc: the same tie rule), run in
blocks of 64 rows so its int64 index array stays small, and vs ``torch.topk``. Outputs are compared:
values must be equal everywhere; indices may differ only in rows where the k-th score is tied with a
column left out (argpartition / torch then pick any of the tied columns, Rust the lowest) or, for torch,
in the order of tied columns; such rows are counted and checked.

Numbers depend on the machine; numpy's partition is single-threaded, Rust and torch use every core
(printed). Run with ``RAYON_NUM_THREADS=1`` for a one-core comparison.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from intdistill import _core  # noqa: E402


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def numpy_topk(s: np.ndarray, k: int, block: int = 64) -> tuple[np.ndarray, np.ndarray]:
    nq, n = s.shape
    idx = np.empty((nq, k), dtype=np.int64)
    vals = np.empty((nq, k), dtype=s.dtype)
    for a in range(0, nq, block):
        blk = s[a : a + block]
        part = np.argpartition(blk, n - k, axis=1)[:, n - k :]  # the k largest, unordered
        v = np.take_along_axis(blk, part, axis=1)
        order = np.lexsort((part, -v), axis=1)  # score desc, then column asc
        idx[a : a + block] = np.take_along_axis(part, order, axis=1)
        vals[a : a + block] = np.take_along_axis(v, order, axis=1)
    return idx, vals


def check_topk(name: str, s: np.ndarray, idx: np.ndarray, vals: np.ndarray, ridx: np.ndarray, rvals: np.ndarray) -> str:
    """Values must be equal; a row's indices may differ only among equal scores (order of tied columns, or
    which of the columns tied at the k-th place made the cut)."""
    if not np.array_equal(vals, rvals):
        raise SystemExit(f"{name}: values differ from Rust's")
    diff = np.nonzero((idx != ridx).any(axis=1))[0]
    for r in diff:
        for v in np.unique(rvals[r]):
            mine, theirs = set(ridx[r][rvals[r] == v]), set(idx[r][vals[r] == v])
            if mine != theirs and not (v == rvals[r, -1] and np.count_nonzero(s[r] == v) > len(mine)):
                raise SystemExit(f"{name}: row {r} differs from Rust's beyond ties")
    return f"values equal; indices equal in {len(s) - len(diff)}/{len(s)} rows, the other {len(diff)} differ only among tied scores"


def bench_topk(args, rng) -> None:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    print(f"== top-k: float32 ({args.nq}, {args.n}), k={args.k}  (cores: {os.cpu_count()}, "
          f"RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset')}, torch threads {torch.get_num_threads()})")
    s = rng.standard_normal((args.nq, args.n), dtype=np.float32)
    t_rust, (ridx, rvals) = timed(lambda: _core.topk(s, args.k), repeat=3)
    t_np, (nidx, nvals) = timed(lambda: numpy_topk(s, args.k))
    ts = torch.from_numpy(s)
    t_torch, (tv, ti) = timed(lambda: torch.topk(ts, args.k, dim=1, largest=True, sorted=True))
    print(f"  rust _core.topk                 {t_rust:8.3f} s")
    print(f"  numpy argpartition + lexsort k  {t_np:8.3f} s   ratio {t_np / t_rust:6.1f}x   {check_topk('numpy', s, nidx, nvals, ridx, rvals)}")
    print(f"  torch.topk (sorted)             {t_torch:8.3f} s   ratio {t_torch / t_rust:6.1f}x   "
          f"{check_topk('torch', s, ti.numpy(), tv.numpy(), ridx, rvals)}")
    small = s[: min(200, args.nq), : min(2000, args.n)]
    k = min(args.k, small.shape[1])
    sidx, _ = _core.topk(np.ascontiguousarray(small), k)
    assert np.array_equal(sidx, np.argsort(-small, axis=1, kind="stable")[:, :k]), "stable argsort prefix"
    print(f"  check: equals np.argsort(-s, kind='stable')[:, :k] on a {small.shape} slice")


PARTS = {"topk": bench_topk}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nq", type=int, default=2000)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of: %(default)s")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    unknown = parts - set(PARTS)
    if unknown:
        ap.error(f"--parts: expected names from {sorted(PARTS)}, got {sorted(unknown)}")
    rng = np.random.default_rng(args.seed)
    for name, fn in PARTS.items():
        if name in parts:
            fn(args, rng)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
