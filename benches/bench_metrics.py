"""Retrieval metrics: intdistill (Rust) vs ranx vs pytrec_eval, same data, same process.

Synthetic run: --queries queries x --docs ranked docs each (distinct docs drawn from a --corpus of
ids, distinct scores, so every tool orders them the same way), graded qrels with 5-20 judged docs
per query (rels 0-3, about half of them among the top 100 results). Five measures: nDCG@10, R@100,
P@10, RR@10, AP@100. Prints seconds per tool and ratios, and the largest per-query difference of
each peer from intdistill (the numbers must be identical).

Timings:
- intdistill, dicts:     evaluate(qrels_dict, run_dict, measures), everything included.
- intdistill, prepared:  evaluate_prepared(p, measures) on CSR arrays built once; the one-off costs of
                         building them from dicts (prepare) and from top-k arrays (prepare_topk) are
                         printed on their own lines.
- ranx, dicts:           ranx.evaluate(qrels_dict, run_dict, metrics) (it converts the dicts itself);
                         "first" is the first call in this process, which includes numba's compilation
                         (numba's cache goes to a fresh temporary directory unless --numba-cache-dir
                         names one), "warm" the best of --repeat later calls.
- ranx, objects:         ranx.evaluate on ranx.Qrels / ranx.Run built beforehand (their build time
                         printed separately).
- pytrec_eval:           RelevanceEvaluator(qrels_dict, measures).evaluate(run_dict).
Warm figures are the best of --repeat calls.

  python benches/bench_metrics.py                      # full size: 10,000 x 1,000
  python benches/bench_metrics.py --queries 500 --docs 200
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from intdistill.metrics import evaluate, evaluate_prepared, prepare, prepare_topk

MEASURES = ["nDCG@10", "R@100", "P@10", "RR@10", "AP@100"]
RANX = {"nDCG@10": "ndcg@10", "R@100": "recall@100", "P@10": "precision@10", "RR@10": "mrr@10", "AP@100": "map@100"}
TREC = {"nDCG@10": "ndcg_cut_10", "R@100": "recall_100", "P@10": "P_10", "RR@10": "recip_rank", "AP@100": "map_cut_100"}


def make_data(n_queries: int, n_docs: int, corpus: int, seed: int):
    """Top-k arrays (as an index returns them) and the same run and qrels as dicts."""
    rng = np.random.default_rng(seed)
    if corpus < n_docs:
        raise SystemExit(f"--corpus must be >= --docs, got {corpus} < {n_docs}")
    doc_ids = [f"doc{i}" for i in range(corpus)]
    qids = [f"q{i}" for i in range(n_queries)]
    indices = np.empty((n_queries, n_docs), dtype=np.int64)
    for q in range(n_queries):
        indices[q] = rng.choice(corpus, n_docs, replace=False)
    # distinct scores, best first, as an index returns them: 1 - rank/n (distinct as float32 too)
    scores = np.broadcast_to(1.0 - np.arange(n_docs) / n_docs, (n_queries, n_docs)).copy()
    run = {q: dict(zip([doc_ids[i] for i in row], s.tolist())) for q, row, s in zip(qids, indices, scores)}
    qrels = {}
    top = min(100, n_docs)
    for q, row in zip(qids, indices):
        n_judged = int(rng.integers(5, 21))
        n_top = min(n_judged // 2, top)
        judged = [doc_ids[i] for i in row[rng.choice(top, n_top, replace=False)]]
        while len(judged) < n_judged:  # the rest: anywhere in the corpus, retrieved or not
            d = doc_ids[int(rng.integers(corpus))]
            if d not in judged:
                judged.append(d)
        qrels[q] = {d: int(r) for d, r in zip(judged, rng.integers(0, 4, n_judged))}
    return qrels, run, qids, doc_ids, indices, scores


def timed(f, repeat: int):
    """(first call seconds, best of `repeat` further calls, last result)."""
    t = time.perf_counter()
    out = f()
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return first, best, out


def max_diff(ours: dict, theirs: dict) -> float:
    return max(abs(ours[q][m] - theirs[q][m]) for q in ours for m in MEASURES)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--docs", type=int, default=1_000, help="ranked docs per query")
    ap.add_argument("--corpus", type=int, default=200_000, help="number of distinct doc ids")
    ap.add_argument("--repeat", type=int, default=3, help="warm calls per tool (best is reported)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-ranx", action="store_true")
    ap.add_argument("--skip-pytrec", action="store_true")
    ap.add_argument("--numba-cache-dir", help="reuse this numba cache (default: a fresh one, so ranx compiles)")
    args = ap.parse_args(argv)
    fresh_cache = None
    if not args.skip_ranx:
        if "numba" in sys.modules:
            raise SystemExit("numba was imported before the cache directory could be set")
        fresh_cache = None if args.numba_cache_dir else tempfile.mkdtemp(prefix="bench-numba-")
        os.environ["NUMBA_CACHE_DIR"] = args.numba_cache_dir or fresh_cache
    try:
        return run_bench(args)
    finally:
        if fresh_cache:
            shutil.rmtree(fresh_cache, ignore_errors=True)


def run_bench(args) -> int:

    print(f"# {args.queries} queries x {args.docs} docs ({args.queries * args.docs:,} results), "
          f"corpus {args.corpus:,}, measures {' '.join(MEASURES)}")
    print(f"# machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start, python {sys.version.split()[0]}")
    t = time.perf_counter()
    qrels, run, qids, doc_ids, indices, scores = make_data(args.queries, args.docs, args.corpus, args.seed)
    print(f"# data generated in {time.perf_counter() - t:.1f} s")

    rows = []  # (tool, first, warm)
    first, warm, ours = timed(lambda: evaluate(qrels, run, MEASURES), args.repeat)
    rows.append(("intdistill evaluate (dicts)", first, warm))
    ours_pq = ours.per_query
    t = time.perf_counter()
    prepared = prepare(qrels, run)
    t_prepare = time.perf_counter() - t
    t = time.perf_counter()
    prepared_topk = prepare_topk(qrels, qids, doc_ids, indices, scores)
    t_prepare_topk = time.perf_counter() - t
    first, warm, prep = timed(lambda: evaluate_prepared(prepared, MEASURES), args.repeat)
    rows.append(("intdistill evaluate_prepared", first, warm))
    diffs = {"intdistill prepared (from dicts)": max_diff(ours_pq, prep.per_query),
             "intdistill prepared (from top-k arrays)": max_diff(ours_pq, evaluate_prepared(prepared_topk, MEASURES).per_query)}
    rows.append(("  one-off: prepare(qrels, run dicts)", t_prepare, float("nan")))
    rows.append(("  one-off: prepare_topk(arrays)", t_prepare_topk, float("nan")))

    if not args.skip_ranx:
        import ranx

        metrics = [RANX[m] for m in MEASURES]
        first, warm, out = timed(lambda: ranx.evaluate(qrels, run, metrics, return_mean=False), args.repeat)
        rows.append(("ranx evaluate (dicts)", first, warm))
        theirs = {q: {m: float(out[RANX[m]][i]) for m in MEASURES} for i, q in enumerate(qrels)}
        diffs["ranx"] = max_diff(ours_pq, theirs)
        t = time.perf_counter()
        rq, rr = ranx.Qrels(qrels), ranx.Run(run)
        t_objects = time.perf_counter() - t
        first, warm, _ = timed(lambda: ranx.evaluate(rq, rr, metrics, return_mean=False, save_results_in_run=False), args.repeat)
        rows.append(("ranx evaluate (Qrels/Run objects)", first, warm))
        rows.append(("  one-off: ranx.Qrels + ranx.Run", t_objects, float("nan")))

    if not args.skip_pytrec:
        import pytrec_eval

        trec_measures = {"ndcg_cut.10", "recall.100", "P.10", "recip_rank", "map_cut.100"}
        first, warm, out = timed(lambda: pytrec_eval.RelevanceEvaluator(qrels, trec_measures).evaluate(run), args.repeat)
        rows.append(("pytrec_eval", first, warm))
        # recip_rank has no cutoff: RR@10 = recip_rank when the first relevant doc is in the top 10
        theirs = {
            q: {m: (v[TREC[m]] if m != "RR@10" or v["recip_rank"] >= 0.1 - 1e-12 else 0.0) for m in MEASURES}
            for q, v in out.items()
        }
        diffs["pytrec_eval"] = max_diff(ours_pq, theirs)

    base_dicts = rows[0][2]
    base_prep = rows[1][2]
    print()
    print(f"{'tool':40s} {'first s':>9s} {'warm s':>9s} {'warm / ours(dicts)':>19s} {'warm / ours(prepared)':>22s}")
    for name, first, warm in rows:
        if warm != warm:  # one-off cost rows
            print(f"{name:40s} {first:9.3f} {'':>9s}")
            continue
        print(f"{name:40s} {first:9.3f} {warm:9.3f} {warm / base_dicts:18.1f}x {warm / base_prep:21.1f}x")
    print()
    print("max |per-query difference| vs intdistill evaluate (dicts), over all queries and measures:")
    for name, d in diffs.items():
        print(f"  {name:40s} {d:.3g}")
    print(f"mean: {', '.join(f'{m}={v:.4f}' for m, v in ours.mean.items())}")
    bad = {n: d for n, d in diffs.items() if d > 1e-9}
    if bad:
        print(f"MISMATCH: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
