"""Teacher quality: the LLM's order vs the first stage's order inside the same candidate lists.

Judged by qrels (nDCG@10, RR@10, Success@1) or by answer strings (a candidate holding an answer counts as
relevant: nDCG@10, RR@10, Acc@1), with a paired randomisation test, the identity and repair rates, and a PNG
of where the LLM puts each first-stage position. Works on label files made elsewhere too (the shared format).
"""

from __future__ import annotations

import json
import sys


def configure(p) -> None:
    p.add_argument("--labels", required=True, help="labels JSONL (intdistill's or the shared raw-output format)")
    p.add_argument("--qrels", help="qrels (TREC or BEIR TSV) to judge by")
    p.add_argument("--queries", help="queries with answers (SQuAD JSON or JSONL with 'answers'), with --corpus")
    p.add_argument("--corpus", help="corpus, needed to judge by answers")
    p.add_argument("-k", type=int, default=10, help="cutoff for nDCG and RR (default 10)")
    p.add_argument("--plot", help="write the position histogram PNG here")
    p.add_argument("--format", choices=["table", "json"], default="table")


def run(args) -> int:
    from intdistill.data import DataError, load_corpus, load_qrels, load_queries
    from intdistill.labels import load_labels, plot_positions, teacher_report

    labels = load_labels(args.labels)
    if args.qrels:
        report = teacher_report(labels, qrels=load_qrels(args.qrels), k=args.k)
    elif args.queries and args.corpus:
        report = teacher_report(labels, queries=load_queries(args.queries), corpus=load_corpus(args.corpus), k=args.k)
    else:
        raise DataError(None, None, "label-report needs --qrels, or --queries (with answers) and --corpus")
    if args.format == "json":
        json.dump(report.to_json(), sys.stdout, indent=1)
        print()
    else:
        print("\n".join(report.lines()))
    if args.plot:
        print(f"wrote {plot_positions(report, args.plot)}", file=sys.stderr)
    return 0
