"""Load speeds of intdistill.data on the shared data and on a synthetic TREC run.

Peers in the same run: ranx ``Run.from_file`` (TREC) and the bare parsing loop that ranx uses inside it
(``q, _, d, _, s, _ = line.split(); run[q][d] = float(s)``, no validation): the floor for pure Python.

    PYTHONPATH=python python benches/bench_data.py --lines 10000000 --peer-lines 1000000
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from intdistill.data import Run, load_beir, load_corpus, load_qrels, load_queries, load_run, load_squad, save_run

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def timed(fn, *args, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def bare_loop(path):
    run = defaultdict(dict)
    with open(path) as f:
        for line in f:
            q, _, d, _, s, _ = line.split()
            run[q][d] = float(s)
    return run


def synthetic_run(n_lines: int, per_query: int = 1000, seed: int = 0) -> Run:
    rng = random.Random(seed)
    run = Run(tag="bench")
    for q in range(max(1, n_lines // per_query)):
        run[f"q{q}"] = {str(rng.randrange(10**7)): rng.random() * 10 for _ in range(per_query)}
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000, help="synthetic run size for intdistill (lines)")
    ap.add_argument("--peer-lines", type=int, default=1_000_000, help="run size for the peers (ranx is slow)")
    args = ap.parse_args()

    scifact, squad = DATA / "scifact", DATA / "squad-dev" / "dev-v1.1.part.json"
    for name, fn, arg in [("SciFact corpus (5,183 docs, 8.1 MB)", load_corpus, scifact),
                          ("SciFact queries (1,109)", load_queries, scifact),
                          ("SciFact train qrels (919, CRLF)", load_qrels, scifact / "qrels" / "train.tsv"),
                          ("SciFact load_beir(test)", lambda d: load_beir(d, "test"), scifact),
                          ("SQuAD part load_squad (1,458 / 7,672)", load_squad, squad)]:
        dt, _ = timed(fn, arg, repeat=3)
        print(f"{name:42s} {dt * 1e3:8.1f} ms (best of 3)")

    with tempfile.TemporaryDirectory() as tmp:
        sizes = {args.peer_lines: True}
        sizes.setdefault(args.lines, False)
        for n, peers in sorted(sizes.items()):
            run = synthetic_run(n)
            n = run.n_pairs()
            path = Path(tmp) / f"run{n}.trec"
            dt_save, _ = timed(save_run, run, path)
            del run
            dt_load, loaded = timed(load_run, path)
            size = path.stat().st_size / 1e6
            print(f"\nrun of {n:,} lines ({size:.0f} MB): save_run {dt_save:.2f} s ({n / dt_save:,.0f} lines/s), "
                  f"load_run {dt_load:.2f} s ({n / dt_load:,.0f} lines/s)")
            del loaded
            if peers:
                dt_bare, _ = timed(bare_loop, path)
                print(f"  bare loop (no checks)   {dt_bare:.2f} s ({n / dt_bare:,.0f} lines/s); "
                      f"load_run / bare = {dt_load / dt_bare:.2f}x time")
                try:
                    from ranx import Run as RanxRun
                except ImportError:
                    print("  ranx not installed: peer skipped", file=sys.stderr)
                else:
                    dt_ranx, _ = timed(RanxRun.from_file, str(path), "trec")
                    print(f"  ranx Run.from_file      {dt_ranx:.2f} s ({n / dt_ranx:,.0f} lines/s); "
                          f"load_run / ranx = {dt_load / dt_ranx:.2f}x time")
            path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
