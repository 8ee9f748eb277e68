"""First-stage retrieval: the top-n candidate passages of each query by exact dense search.

Writes JSONL (one line per query: qid, cands, scores, retriever), or a TREC run when --out ends with
.trec or .run. With --qrels, only queries judged there are used, and the share of their relevant
documents found among the candidates is reported on stderr.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from intdistill.commands.common import (
    add_encoding_args,
    add_query_selection_args,
    add_ray_arg,
    positive_int,
    ray_encoder,
    select_queries,
)

logger = logging.getLogger(__name__)

RUN_SUFFIXES = (".trec", ".run")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, help="corpus: JSONL, BEIR directory or SQuAD JSON")
    parser.add_argument("--queries", required=True, help="queries: JSONL (or what intdistill.data reads)")
    parser.add_argument("-n", type=positive_int, required=True, help="candidates per query")
    parser.add_argument("--out", required=True, help="output: .jsonl candidates, or a TREC run if it ends in .trec/.run")
    parser.add_argument("--retriever", default=None,
                        help="retriever: local directory or hub name (default: bundled all-MiniLM-L6-v2)")
    parser.add_argument("--qrels", default=None, help="only use queries judged in these qrels (TREC or BEIR TSV)")
    add_query_selection_args(parser)
    add_encoding_args(parser)
    add_ray_arg(parser)


def run(args: argparse.Namespace) -> int:
    from intdistill import data
    from intdistill.candidates import first_stage
    from intdistill.models import Retriever

    corpus = data.load_corpus(args.corpus)
    queries = data.load_queries(args.queries)
    if not corpus:
        raise data.DataError(args.corpus, None, "expected at least one passage, got an empty corpus")
    if args.n > len(corpus):
        raise data.DataError(args.corpus, None, f"expected at least -n {args.n} passages, got {len(corpus)}")
    qrels = None
    if args.qrels is not None:
        qrels = data.load_qrels(args.qrels)
        unknown = [q for q in qrels if q not in queries]
        if unknown:
            logger.warning("%d judged queries of %s are not in %s (e.g. %r)", len(unknown), args.qrels,
                           args.queries, unknown[0])
        queries = {qid: q for qid, q in queries.items() if qid in qrels}
    if not queries:
        where = args.qrels if qrels is not None else args.queries
        raise data.DataError(where, None, "expected at least one query to retrieve for, got none")
    queries = select_queries(queries, args)

    t0 = time.perf_counter()
    retriever = Retriever.load(args.retriever, device=args.device)
    t1 = time.perf_counter()
    cands = first_stage(retriever, corpus, queries, args.n, batch_size=args.batch_size, progress=True,
                        cache_dir=args.cache_dir, encode=ray_encoder(args, retriever))
    t2 = time.perf_counter()
    if args.out.endswith(RUN_SUFFIXES):
        data.save_run(cands.to_run(), args.out)
    else:
        cands.save(args.out)
    print(f"{len(cands)} queries x {args.n} candidates from {len(corpus)} passages -> {args.out} "
          f"(load {t1 - t0:.1f}s, encode+search {t2 - t1:.1f}s)", file=sys.stderr)
    if qrels is not None:
        found = total = 0
        for qid, cl in cands.items():
            relevant = {d for d, rel in qrels[qid].items() if rel > 0}
            total += len(relevant)
            found += len(relevant.intersection(cl.docids))
        if total:
            print(f"judged-relevant documents among the candidates: {found}/{total} "
                  f"(pooled recall {found / total:.4f})", file=sys.stderr)
    return 0
