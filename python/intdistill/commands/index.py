"""Build a dense index: encode the corpus with the retriever and index it with usearch (HNSW).

Writes the index directory (index.usearch, docids.json, meta.json) and reports on stderr the build time,
the index size and the recall@10 of the HNSW search against exact search on a sample of queries: the
queries of --queries when given, else passages of the corpus.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from intdistill.commands.common import add_encoding_args, add_ray_arg, non_negative_int, positive_int, ray_encoder


def configure(parser: argparse.ArgumentParser) -> None:
    from intdistill.index import (DEFAULT_CONNECTIVITY, DEFAULT_EXPANSION_ADD, DEFAULT_EXPANSION_SEARCH, DTYPES,
                                  METRICS)

    parser.add_argument("--corpus", required=True, help="corpus: JSONL, BEIR directory or SQuAD JSON")
    parser.add_argument("--out", required=True, help="index directory to write (created if missing)")
    parser.add_argument("--retriever", default=None,
                        help="retriever: local directory or hub name (default: bundled all-MiniLM-L6-v2)")
    parser.add_argument("--metric", choices=METRICS, default=None,
                        help="cos or ip (default: cos when the retriever normalises its embeddings, else ip)")
    parser.add_argument("--dtype", choices=DTYPES, default="f32",
                        help="storage of passage vectors (default f32; i8 needs --metric cos)")
    parser.add_argument("--connectivity", type=positive_int, default=DEFAULT_CONNECTIVITY,
                        help=f"HNSW links per node, M (default {DEFAULT_CONNECTIVITY})")
    parser.add_argument("--expansion-add", type=positive_int, default=DEFAULT_EXPANSION_ADD,
                        help=f"HNSW build breadth, efConstruction (default {DEFAULT_EXPANSION_ADD})")
    parser.add_argument("--expansion-search", type=positive_int, default=DEFAULT_EXPANSION_SEARCH,
                        help=f"HNSW search breadth, ef (default {DEFAULT_EXPANSION_SEARCH})")
    parser.add_argument("--queries", default=None, help="queries for the recall check (default: sampled passages)")
    parser.add_argument("--check-sample", type=non_negative_int, default=1000,
                        help="queries (or passages) in the recall check; 0 skips it (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the recall-check sample (default 0)")
    parser.add_argument("--target-recall", type=_unit_interval, default=None, metavar="R",
                        help="double --expansion-search (up to 4096) until the recall check reaches R, e.g. 0.98; "
                             "the ef found is saved with the index (large indexes need more than the default)")
    add_encoding_args(parser)
    add_ray_arg(parser)


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from intdistill import data
    from intdistill.index import INDEX_FILE, DenseIndex
    from intdistill.models import Retriever

    corpus = data.load_corpus(args.corpus)
    if not corpus:
        raise data.DataError(args.corpus, None, "expected at least one passage, got an empty corpus")
    queries = data.load_queries(args.queries) if args.queries is not None else None
    if queries is not None and not queries:
        raise data.DataError(args.queries, None, "expected at least one query for the recall check, got none")
    if args.target_recall is not None and not args.check_sample:
        raise data.DataError(None, None, "--target-recall needs the recall check: expected --check-sample >= 1, got 0")
    if args.dtype == "i8" and args.metric == "ip":
        raise data.DataError(None, None, "--dtype i8 needs --metric cos (usearch's int8 inner product is not in "
                                         "the embeddings' units)")

    t0 = time.perf_counter()
    retriever = Retriever.load(args.retriever, device=args.device)
    if args.dtype == "i8" and args.metric is None and not retriever.normalize:
        raise data.DataError(None, None, f"--dtype i8 needs --metric cos; retriever {retriever.name!r} does not "
                                         f"normalise, so the default metric is ip")
    check_queries = None
    if queries is not None and args.check_sample:
        texts = [q.text for q in queries.values()]
        if len(texts) > args.check_sample:  # encode only the sample
            texts = [texts[i] for i in sorted(random.Random(args.seed).sample(range(len(texts)), args.check_sample))]
        check_queries = retriever.encode_queries(texts, batch_size=args.batch_size, progress=True)
    t1 = time.perf_counter()
    index = DenseIndex.build(
        retriever, corpus, metric=args.metric, dtype=args.dtype, connectivity=args.connectivity,
        expansion_add=args.expansion_add, expansion_search=args.expansion_search, batch_size=args.batch_size,
        progress=True, check_sample=args.check_sample, check_queries=check_queries, seed=args.seed,
        cache_dir=args.cache_dir, target_recall=args.target_recall, encode=ray_encoder(args, retriever),
    )
    out = index.save(args.out)
    t2 = time.perf_counter()
    m = index.meta
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"{m.count} passages x {m.dim}-d ({m.metric}, {m.dtype}) -> {out} "
          f"({size / 1e6:.1f} MB, of which {INDEX_FILE} {(out / INDEX_FILE).stat().st_size / 1e6:.1f} MB)",
          file=sys.stderr)
    print(f"time: load {t1 - t0:.1f}s, encode {m.encode_seconds:.1f}s, build {m.build_seconds:.1f}s, "
          f"total {t2 - t0:.1f}s", file=sys.stderr)
    if m.check_recall is not None:
        print(f"recall@{m.check_k} vs exact search: {m.check_recall:.4f} on {m.check_queries} sampled {m.check_source} "
              f"at ef {m.expansion_search}", file=sys.stderr)
        if m.target_recall is not None:
            how = (f"ef raised from {m.tuned_from} to {m.expansion_search}" if m.tuned_from is not None
                   else f"met at ef {m.expansion_search}")
            met = "reached" if m.check_recall >= m.target_recall else "NOT reached (denser graph needed)"
            print(f"target recall {m.target_recall:g}: {met}; {how}", file=sys.stderr)
    else:
        print("recall check skipped (--check-sample 0)", file=sys.stderr)
    return 0
