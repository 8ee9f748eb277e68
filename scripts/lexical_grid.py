#!/usr/bin/env python3
"""The lexical weight, chosen on TRAINING lists only: the untrained ranker with the lexical term,
``20 · cos_MiniLM + w · bm25 / max_q`` (intdistill.lexical), re-ranks each training query's MiniLM top-n list
for a grid of weights w; the lists are judged by qrels (SciFact) or answer strings (SQuAD).

    python scripts/lexical_grid.py --corpus ../shared/data/scifact/corpus.jsonl \
        --candidates work/scifact-distill/train-cands.jsonl --qrels ../shared/data/scifact/qrels/train.tsv
    python scripts/lexical_grid.py --corpus work/squad-dev/corpus.jsonl \
        --candidates work/squad-dev-run/candidates.jsonl --queries work/squad-dev/train-queries.jsonl

The candidates files are `intdistill candidates` output (they carry MiniLM's cosines), as
scripts/scifact-distill.sh and scripts/squad-tune.sh make them. No model is loaded: the cosines come from the
file, so the grid takes seconds.
"""

from __future__ import annotations

import argparse
import sys

from intdistill import data
from intdistill.candidates import Candidates
from intdistill.lexical import BM25
from intdistill.metrics import evaluate
from intdistill.significance import compare

GRID = (0, 5, 10, 15, 20, 30, 40)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--candidates", required=True, help="`intdistill candidates` JSONL with scores (cosines)")
    ap.add_argument("--qrels", help="judge by qrels (else by the answers of --queries)")
    ap.add_argument("--queries", help="queries with answers (SQuAD)")
    ap.add_argument("--grid", type=float, nargs="+", default=GRID)
    ap.add_argument("--max-queries", type=int, default=None,
                    help="only the first N lists (leave out those a ranker check or a held-out run judges)")
    ap.add_argument("--scale", type=float, default=20.0, help="the ranker's cosine scale (default 20)")
    args = ap.parse_args(argv)
    if not args.qrels and not args.queries:
        ap.error("give --qrels, or --queries with answers")
    corpus = data.load_corpus(args.corpus)
    cands = Candidates.load(args.candidates)
    qids = list(cands)[: args.max_queries]
    queries = data.load_queries(args.queries) if args.queries else None
    qrels = data.load_qrels(args.qrels) if args.qrels else None
    measures = ["nDCG@10", "RR@10"] if qrels is not None else ["Acc@1", "Acc@5"]
    bm = BM25.fit(p.full_text() for p in corpus.values())
    print(f"{len(qids)} of {len(cands)} lists; BM25 fitted on {bm.n_docs} passages", file=sys.stderr)
    lex = {}
    for qid in qids:
        ids, scores, text = cands[qid]
        if not text and (queries is None or qid not in queries):
            raise SystemExit(f"{args.candidates}: list {qid!r} has no query text; give --queries with it")
        text = text or queries[qid].text
        lex[qid] = (ids, scores, bm.normalized(text, [corpus[d].full_text() for d in ids]))
    runs = {}
    for w in args.grid:
        runs[f"w={w:g}"] = {q: {d: args.scale * s + w * x for d, s, x in zip(ids, scores, nb)}
                            for q, (ids, scores, nb) in lex.items()}
    if qrels is not None:  # judge the lists kept, and only them
        qrels = {q: qrels[q] for q in qids if q in qrels}
    answers = ({q: queries[q] for q in qids}, corpus) if qrels is None else (None, None)
    evals = {name: evaluate(qrels, run, measures, queries=answers[0], corpus=answers[1]) for name, run in runs.items()}
    print(compare(evals, baseline=f"w={args.grid[0]:g}").to_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
