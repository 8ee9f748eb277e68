"""Search a dense index (built by `intdistill index`) with query texts.

Either query TEXT arguments: prints to stdout, per query, the ranked doc ids with their scores (and the first
words of each passage with --corpus); or --queries Q with --out: writes a TREC run (or, for an --out not
ending in .trec/.run, candidates JSONL as `intdistill candidates` writes it).

The retriever defaults to the one recorded in the index's meta.json; a retriever of another dimension is
an error, and one whose weights or configuration differ from the recorded fingerprint is an error unless
--allow-retriever-mismatch is given.
"""

from __future__ import annotations

import argparse
import sys
import time

from intdistill.stages.first_stage import RUN_SUFFIXES
from intdistill.commands.common import open_index, positive_int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="query texts (or use --queries)")
    parser.add_argument("-k", type=positive_int, default=10, help="passages per query (default 10)")
    parser.add_argument("--queries", default=None, help="queries file: search every query, write --out")
    parser.add_argument("--out", default=None, help="with --queries: TREC run (.trec/.run) or candidates JSONL")
    parser.add_argument("--corpus", default=None, help="with TEXT: show the first words of each passage")
    parser.add_argument("--words", type=positive_int, default=20, help="passage words shown (default 20)")
    parser.add_argument("--exact", action="store_true", help="exhaustive search instead of HNSW (for checking)")
    from intdistill.commands.rag import INDEX_FIELDS
    from intdistill.stages.llm_steps import RagConfig

    RagConfig.add_arguments(parser, only=INDEX_FIELDS)  # the index flags of `rag` and `ask`


def run(args: argparse.Namespace) -> int:
    from intdistill import data

    if bool(args.texts) == (args.queries is not None):
        raise data.DataError(None, None, "expected query TEXT arguments or --queries FILE (one of them), got "
                                         + ("both" if args.texts else "neither"))
    if args.queries is not None and args.out is None:
        raise data.DataError(None, None, "--queries needs --out (a .trec/.run file, or .jsonl candidates)")
    if args.texts and args.out is not None:
        raise data.DataError(None, None, "--out goes with --queries; TEXT results are printed to stdout")
    queries = data.load_queries(args.queries) if args.queries is not None else None
    if queries is not None and not queries:
        raise data.DataError(args.queries, None, "expected at least one query, got none")
    corpus = data.load_corpus(args.corpus) if args.corpus is not None and args.texts else None

    from intdistill.stages import OpenIndex, search

    t0 = time.perf_counter()
    index, retriever = open_index(args, args.k)
    from intdistill.candidates import describe_hybrid, lexical_rescore, rescore_pool

    pool = rescore_pool(args.k, args.lexical_pool, len(index)) if args.lexical_weight > 0 else args.k
    bm25 = how = None
    if args.lexical_weight > 0:
        from intdistill.stages.judge import index_bm25, index_corpus

        if corpus is None:
            corpus = index_corpus(index, args.index, args.corpus)
        bm25, how = index_bm25(index, args.index, corpus, args.corpus)
    t1 = time.perf_counter()
    asked = queries if queries is not None else {
        str(i + 1): data.Query(str(i + 1), text) for i, text in enumerate(args.texts)}
    found = search(OpenIndex(index, retriever), asked, pool, exact=args.exact, batch_size=args.batch_size,
                   progress=queries is not None)
    if args.lexical_weight > 0:
        found = lexical_rescore(found, corpus, args.lexical_weight, args.k, bm25=bm25)
        print(f"hybrid: {describe_hybrid(pool, args.lexical_weight)}; {how}", file=sys.stderr)
    t2 = time.perf_counter()

    if queries is None:
        for n, (qid, cl) in enumerate(found.items()):
            if len(found) > 1:
                print(("\n" if n else "") + f"query {n + 1}: {asked[qid].text}")
            for rank, (docid, score) in enumerate(zip(cl.docids, cl.scores), 1):
                line = f"{rank}\t{docid}\t{score:.4f}"
                if corpus is not None:
                    passage = corpus.get(docid)
                    words = passage.full_text().split() if passage is not None else ["(not in --corpus)"]
                    line += "\t" + " ".join(words[: args.words]) + (" ..." if len(words) > args.words else "")
                print(line)
    else:
        if args.out.endswith(RUN_SUFFIXES):
            data.save_run(found.to_run(), args.out)
        else:
            found.save(args.out)
        print(f"{len(found)} queries x {args.k} passages from {len(index)} indexed -> {args.out}", file=sys.stderr)
    print(f"time: load {t1 - t0:.1f}s, encode+search {t2 - t1:.1f}s ({'exact' if args.exact else 'HNSW'}, "
          f"ef={index.expansion_search})", file=sys.stderr)
    return 0
