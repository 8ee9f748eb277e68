"""Teacher quality: the LLM's order vs the first stage's order inside the same candidate lists.

Judged by qrels (nDCG@10, RR@10, Success@1) or by answer strings (a candidate holding an answer counts as
relevant: nDCG@10, RR@10, Acc@1), with a paired randomisation test, the identity and repair rates, and a PNG
of where the LLM puts each first-stage position. Works on label files made elsewhere too (the shared format).

With ``--ranker DIR --candidates FILE`` instead of ``--labels``, the same report judges a trained ranker
(`intdistill train-ranker`): its order of each candidate list against the first stage's. Give it lists the
ranker was not trained on; a ranker that is not better than the first stage cannot teach the retriever.
"""

from __future__ import annotations

import json
import sys


def configure(p) -> None:
    p.add_argument("--labels", help="labels JSONL (intdistill's or the shared raw-output format)")
    p.add_argument("--ranker", help="instead of --labels: a trained ranker directory (or hub name) to judge")
    p.add_argument("--candidates", help="with --ranker: the candidate lists it re-ranks (from `intdistill candidates`, or a "
                                          "label file: its candidates in first-stage order)")
    p.add_argument("--qrels", help="qrels (TREC or BEIR TSV) to judge by")
    p.add_argument("--queries", help="queries with answers (SQuAD JSON or JSONL with 'answers'), with --corpus; "
                                     "with --ranker, also the query texts when the candidates hold none")
    p.add_argument("--corpus", help="corpus, needed to judge by answers and for --ranker")
    p.add_argument("-k", type=int, default=10, help="cutoff for nDCG and RR (default 10)")
    p.add_argument("--plot", help="write the position histogram PNG here")
    p.add_argument("--format", choices=["table", "json"], default="table")
    r = p.add_argument_group("--ranker scoring")
    r.add_argument("--max-length", type=int, default=None, help="tokens per pair (default: the ranker's own)")
    r.add_argument("--batch-size", type=int, default=64, help="pairs per forward pass (default 64)")
    r.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    r.add_argument("--cache-dir", default=None,
                   help="the first stage's corpus encoding cache (`candidates --cache-dir`): a ranker with a frozen "
                        "passage tower reads its passage embeddings from it")


def _ranker_inputs(args, queries, corpus):
    """``(ranker, lists, cfg)``: the ranker loaded once, the lists it re-ranks and how it scores them."""
    from intdistill.stages.training import read_lists, with_query_texts
    from intdistill.data import DataError
    from intdistill.stages import RankerCheck, load_ranker

    lists = read_lists(args.candidates)[0]
    if not lists:
        raise DataError(args.candidates, None, "expected at least one candidate list, got none")
    lists = with_query_texts(lists, queries, args.candidates, "candidate list")
    cfg = RankerCheck(max_length=args.max_length, batch_size=args.batch_size, device=args.device,
                      cache_dir=args.cache_dir, k=args.k, progress=sys.stderr.isatty())
    return load_ranker(args.ranker, lists, corpus, cfg), lists, cfg


def run(args) -> int:
    from intdistill.data import DataError, load_corpus, load_qrels, load_queries
    from intdistill.gate import plot_positions, teacher_report
    from intdistill.labels import load_labels

    if bool(args.labels) == bool(args.ranker):
        raise DataError(None, None, "label-report needs --labels FILE, or --ranker DIR with --candidates FILE "
                                    "(one of the two)")
    if args.ranker and not (args.candidates and args.corpus):
        raise DataError(None, None, "--ranker needs --candidates (the lists to re-rank) and --corpus (their texts)")
    if args.candidates and not args.ranker:
        raise DataError(None, None, "--candidates goes with --ranker (a label file holds its own candidates)")
    if not args.qrels and not (args.queries and args.corpus):
        raise DataError(None, None, "label-report needs --qrels, or --queries (with answers) and --corpus")
    queries = load_queries(args.queries) if args.queries else None
    corpus = load_corpus(args.corpus) if args.corpus else None
    qrels = load_qrels(args.qrels) if args.qrels else None
    if args.ranker:
        from intdistill.stages import ranker_order

        ranker, lists, cfg = _ranker_inputs(args, queries, corpus)
        labels, subject = ranker_order(ranker, lists, corpus, cfg), "ranker"
    else:
        labels, subject = load_labels(args.labels), "teacher"
    try:
        if qrels is not None:
            report = teacher_report(labels, qrels=qrels, k=args.k, subject=subject)
        else:
            report = teacher_report(labels, queries=queries, corpus=corpus, k=args.k, subject=subject)
    except ValueError as e:  # no judged list among them
        raise DataError(args.labels or args.candidates, None, str(e)) from None
    anchor = None
    if args.ranker:  # a ranker with a lexical term: the labels' share, against its untrained anchor
        from intdistill.stages import check_against_anchor

        try:
            anchor = check_against_anchor(ranker, lists, corpus, cfg, qrels=qrels, queries=queries, labels=labels)
        except ValueError as e:
            if isinstance(e, DataError):
                raise
            raise DataError(args.candidates, None, str(e)) from None
    if args.format == "json":
        out = report.to_json()
        if anchor is not None:
            out["vs_anchor"] = anchor.to_json()
        json.dump(out, sys.stdout, indent=1)
        print()
    else:
        print("\n".join(report.lines()))
        if anchor is not None:
            print("the labels' share: the ranker against its untrained anchor (the first stage + BM25, no labels)")
            print("\n".join(anchor.lines()))
    if args.plot:
        print(f"wrote {plot_positions(report, args.plot)}", file=sys.stderr)
    return 0
