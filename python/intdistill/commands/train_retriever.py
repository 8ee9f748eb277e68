"""Stage 2: distil the trained ranker into the bi-encoder retriever (KL over mined candidates).

Needs no labels: every query in --queries (and --extra-queries) is a training query. Each query's top
--n-candidates passages are mined by the current retriever (exact search over the whole corpus), re-mined
every --refresh epochs, and scored once by the frozen ranker (cached in --teacher-cache). The trained
retriever is written to --out (it loads with sentence_transformers.SentenceTransformer), with
checkpoints/ (a rerun resumes), best/ and metrics.jsonl.
"""

from __future__ import annotations

import argparse
import logging
import sys

from intdistill.commands.common import positive_int
from intdistill.commands.train_ranker import add_train_args, set_threads, train_config

logger = logging.getLogger(__name__)


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}") from None
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return x


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ranker", required=True, help="the trained ranker directory (from train-ranker): the teacher")
    parser.add_argument("--queries", required=True, help="training queries: JSONL or BEIR directory (texts only)")
    parser.add_argument("--corpus", required=True, help="corpus: JSONL, BEIR directory or SQuAD JSON")
    parser.add_argument("--out", required=True, help="output directory (the trained retriever, checkpoints/, best/)")
    parser.add_argument("--qrels", help="keep only the --queries judged here (e.g. qrels/train.tsv); "
                                        "the judgements themselves are not used")
    parser.add_argument("--extra-queries", action="append", default=[], metavar="FILE",
                        help="more (unlabelled) training queries; repeatable")
    parser.add_argument("--max-queries", type=positive_int, help="train on the first N queries")
    parser.add_argument("--retriever", default=None,
                        help="starting retriever: directory or hub name (default: bundled all-MiniLM-L6-v2)")
    parser.add_argument("--n-candidates", type=positive_int, default=10, help="mined passages per query (default 10)")
    parser.add_argument("--refresh", type=positive_int, default=1, help="re-mine every N epochs (default 1)")
    parser.add_argument("--tau-student", type=_positive_float, default=0.05,
                        help="temperature of the student's dot products (default 0.05)")
    parser.add_argument("--tau-teacher", type=_positive_float, default=1.0,
                        help="temperature of the ranker's logits (default 1.0)")
    parser.add_argument("--max-length", type=positive_int, default=None,
                        help="tokens per text in the training passes (default: the retriever's own, 256 for "
                             "MiniLM); mining and the saved model keep the retriever's own")
    parser.add_argument("--cache-dir", default=None,
                        help="passage embeddings of the starting retriever, shared with `intdistill candidates "
                             "--cache-dir` (skips the first corpus pass when already there)")
    parser.add_argument("--teacher-cache", default=None,
                        help="SQLite cache of ranker scores (default OUT/teacher_scores.sqlite)")
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="encode the corpus for mining and dev retrieval on Ray workers (auto: the running "
                             "cluster; alone: a Ray on this machine); needs intdistill[distributed]")
    d = parser.add_argument_group("dev evaluation (retrieval over the whole corpus each epoch, keep the best)")
    d.add_argument("--dev-qrels", help="dev judgements; dev queries = those judged here")
    d.add_argument("--dev-queries", help="dev queries (default: --queries); with answers and no --dev-qrels, Acc@k")
    # stage 2's settings, chosen on held-out SciFact training queries (scripts/scifact-tune.sh)
    add_train_args(parser, lr=2e-5, epochs=2, batch_size=8)


def run(args: argparse.Namespace) -> int:
    from intdistill import data
    from intdistill.data import DataError
    from intdistill.models import Ranker
    from intdistill.train.loop import resolve_device
    from intdistill.train.retriever import retrieval_dev, train_retriever

    corpus = data.load_corpus(args.corpus)
    all_queries = data.load_queries(args.queries)
    queries = dict(all_queries)
    if args.qrels:
        qrels = data.load_qrels(args.qrels)
        unknown = [q for q in qrels if q not in all_queries]
        if unknown:
            raise DataError(args.qrels, None, f"{len(unknown)} judged queries are not in {args.queries}, "
                                              f"e.g. {unknown[0]!r}")
        queries = {q: v for q, v in all_queries.items() if q in qrels}
    for path in args.extra_queries:
        for q, v in data.load_queries(path).items():
            if q in queries and queries[q].text != v.text:
                raise DataError(path, None, f"query {q!r} is already a training query with another text")
            queries[q] = v
    if args.max_queries is not None:
        queries = dict(list(queries.items())[: args.max_queries])
    if not queries:
        raise DataError(args.queries, None, "expected at least one training query, got none")
    if args.n_candidates > len(corpus):
        raise DataError(args.corpus, None, f"--n-candidates {args.n_candidates}: expected at most the corpus size "
                                           f"{len(corpus)}")

    dev = None
    if args.dev_qrels or args.dev_queries:
        dev_queries = data.load_queries(args.dev_queries) if args.dev_queries else all_queries
        dev_qrels = data.load_qrels(args.dev_qrels) if args.dev_qrels else None
        try:
            dev = retrieval_dev(dev_queries, qrels=dev_qrels, metric=args.metric,
                                where=args.dev_qrels or args.dev_queries)
        except ValueError as e:
            if isinstance(e, DataError):
                raise
            raise DataError(None, None, str(e)) from None
        overlap = sum(1 for q in dev.queries if q in queries)
        if overlap:
            logger.warning("%d dev queries are also training queries: the dev numbers are optimistic", overlap)

    cfg = train_config(args, dev.measures[0] if dev is not None else (args.metric or "nDCG@10"))
    set_threads(args)
    teacher = Ranker.load(args.ranker, device=resolve_device(cfg.device))
    print(f"distilling {args.ranker} into {args.retriever or 'all-MiniLM-L6-v2'}: {len(queries)} queries x "
          f"{args.n_candidates} candidates from {len(corpus)} passages", file=sys.stderr)
    result = train_retriever(
        teacher, queries, corpus, cfg, retriever=args.retriever, n_candidates=args.n_candidates,
        refresh=args.refresh, tau_student=args.tau_student, tau_teacher=args.tau_teacher,
        cache_path=args.teacher_cache, dev=dev, train_max_length=args.max_length, cache_dir=args.cache_dir,
        ray=args.ray,
    )
    best = (f"; best epoch {result.best_epoch} ({cfg.metric} {result.best_metric:.4f})"
            if result.best_epoch is not None else "")
    print(f"retriever trained: {result.epochs} epochs, {result.steps} steps{best} -> {result.out}", file=sys.stderr)
    return 0
