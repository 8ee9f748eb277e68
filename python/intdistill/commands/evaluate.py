"""Evaluate a run against qrels (nDCG@10, R@100, RR@10, P@10, AP@100, Success@k) or, with --queries and
--corpus instead of --qrels, against answer strings (Acc@k). Measures follow trec_eval; results go to
stdout (an aligned table, markdown or JSON), the count of evaluated queries to stderr.

With several --run NAME=PATH, the first is the baseline: every other run's row shows its change on each
measure and the p-value of a paired randomization test over the queries (10,000 sign flips, seeded).
"""

# intdistill evaluate --qrels test.tsv --run run.trec [-m nDCG@10 R@100 ...] [--per-query] [--format json]
# intdistill evaluate --queries queries.jsonl --corpus corpus.jsonl --run run.trec -m Acc@1 Acc@5 Acc@20
# intdistill evaluate --qrels test.tsv --run base=base.trec --run tuned=tuned.trec   (paired tests vs the first)

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path



def configure(parser: argparse.ArgumentParser) -> None:
    from intdistill.metrics import DEFAULT_MEASURES, REGISTRY, default_measures

    ANSWER_DEFAULTS = default_measures("evaluate", qrels=False)

    known = ", ".join(f"{s.name}@k" for s in REGISTRY.values())
    parser.add_argument("--run", action="append", required=True, metavar="[NAME=]PATH",
                        help="TREC run file (qid Q0 docid rank score tag); repeat to compare runs with the first")
    parser.add_argument("--qrels", type=Path, help="qrels, TREC or BEIR TSV (for all measures but Acc@k)")
    parser.add_argument("--queries", type=Path, help="queries JSONL with answers (for Acc@k)")
    parser.add_argument("--corpus", type=Path, help="corpus: JSONL, BEIR directory or SQuAD JSON (for Acc@k)")
    parser.add_argument(
        "-m",
        "--measures",
        nargs="+",
        metavar="MEASURE",
        help=f"measures ({known}); default {' '.join(DEFAULT_MEASURES)} with --qrels, "
        f"else {' '.join(ANSWER_DEFAULTS)}",
    )
    parser.add_argument("--per-query", action="store_true", help="also print each query's values")
    parser.add_argument("--format", choices=("table", "markdown", "json"), default="table",
                        help="output format (default table)")


def _usage_errors(args, measures) -> list[str]:
    from intdistill.metrics import ANSWERS

    errors = []
    ranked = [m.name for m in measures if m.spec.kind != ANSWERS]
    answer = [m.name for m in measures if m.spec.kind == ANSWERS]
    if ranked and args.qrels is None:
        errors.append(f"measures {' '.join(ranked)} need --qrels")
    if answer and (args.queries is None or args.corpus is None):
        missing = [f for f, v in (("--queries", args.queries), ("--corpus", args.corpus)) if v is None]
        errors.append(f"measures {' '.join(answer)} need --queries and --corpus; missing {' '.join(missing)}")
    return errors


def format_table(result, per_query: bool) -> str:
    """Aligned plain text: one row per query (with ``per_query``) and a final ``all`` row (the means)."""
    names = list(result.mean)
    rows = []
    if per_query:
        rows += [[q] + [f"{vals[m]:.4f}" if m in vals else "-" for m in names] for q, vals in result.per_query.items()]
    rows.append(["all"] + [f"{result.mean[m]:.4f}" for m in names])
    header = ["query"] + names
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])])  # noqa: E731
    return "\n".join(line(r) for r in [header] + rows)


def _named_runs(values: list[str]) -> dict[str, Path]:
    """``NAME=PATH`` or ``PATH`` (named by its file name) -> {name: path}; a repeated name is an error."""
    from intdistill.data import DataError

    runs: dict[str, Path] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name or Path(v).exists():
            name, path = Path(v).name, v
        if name in runs:
            raise DataError(None, None, f"--run: expected distinct run names, got {name!r} twice "
                                        "(name them: --run NAME=PATH)")
        runs[name] = Path(path)
    return runs


def format_comparison(comparison, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(comparison.to_dict(), indent=2)
    if fmt == "markdown":
        return comparison.to_markdown()
    rows = comparison.rows()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = lambda r: "  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])])  # noqa: E731
    return "\n".join(line(r) for r in rows)


def format_markdown(result, per_query: bool) -> str:
    names = list(result.mean)
    rows = [[q] + [f"{vals[m]:.4f}" if m in vals else "-" for m in names] for q, vals in result.per_query.items()] \
        if per_query else []
    rows.append(["all"] + [f"{result.mean[m]:.4f}" for m in names])
    return "\n".join(["| query | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def format_json(result, per_query: bool) -> str:
    out = {
        "measures": list(result.mean),
        "mean": result.mean,
        "n_queries": result.n_queries,
        "n_missing": result.n_missing,
        "n_ignored": result.n_ignored,
    }
    if per_query:
        out["per_query"] = result.per_query
    return json.dumps(out, indent=2)


def run(args: argparse.Namespace) -> int:
    from intdistill import data
    from intdistill.cli import EXIT_BAD_INPUT
    from intdistill.metrics import default_measures, evaluate, parse_measures

    names = args.measures or default_measures("evaluate", qrels=bool(args.qrels or not (args.queries or args.corpus)))
    errors = []
    measures = []
    for name in names:  # report every bad name at once
        try:
            measures += parse_measures(name)
        except ValueError as e:
            errors.append(str(e))
    errors += _usage_errors(args, measures)
    if errors:
        for e in errors:
            print(f"intdistill evaluate: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT

    runs = _named_runs(args.run)
    qrels = data.load_qrels(args.qrels) if args.qrels is not None else None
    queries = data.load_queries(args.queries) if args.queries is not None else None
    corpus = data.load_corpus(args.corpus) if args.corpus is not None else None
    evaluations = {}
    for name, path in runs.items():
        try:
            evaluations[name] = evaluate(qrels, data.load_run(path), measures, queries=queries, corpus=corpus)
        except ValueError as e:
            if isinstance(e, data.DataError):
                raise
            print(f"intdistill evaluate: error: {path}: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
    if len(evaluations) > 1:
        from intdistill.metrics import compare

        comparison = compare(evaluations)
        for name, ev in evaluations.items():
            print(f"{name}: evaluated {ev.n_queries} queries; {ev.n_missing} judged but absent from the run "
                  f"(scored 0), {ev.n_ignored} run queries without judgements ignored", file=sys.stderr)
        print(format_comparison(comparison, args.format))
        return 0
    result = next(iter(evaluations.values()))

    print(
        f"evaluated {result.n_queries} queries; {result.n_missing} judged but absent from the run (scored 0), "
        f"{result.n_ignored} run queries without judgements ignored",
        file=sys.stderr,
    )
    fmt = {"json": format_json, "markdown": format_markdown}.get(args.format, format_table)
    print(fmt(result, args.per_query))
    return 0
