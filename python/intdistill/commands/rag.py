"""Retrieval-augmented QA over a dense index: retrieve -k passages per question, let an LLM reader answer
in a few words, score the answers (SQuAD EM / F1) and the retrieval (Acc@k: a gold answer in the k passages).

Writes one line per question to --out as soon as it is answered (retrieved ids and scores, the reader's raw
text, the parsed answer, the gold answers, EM, F1); rerunning the same command resumes, and every LLM answer
comes from --cache for free. Questions without gold answers are answered but not scored. The means go to
stdout; progress, counts and the LLM ledger to stderr. A budget stop (--max-calls / --max-cost) prints the
means so far and exits 3.
"""

from __future__ import annotations

import sys

from intdistill.commands.common import (add_index_args, add_llm_args, add_query_selection_args, add_ray_arg, index_corpus,
                                        open_index, open_llm, positive_int, select_queries)


def add_reader_args(parser) -> None:
    """Reader options shared by `rag` and `ask`."""
    from intdistill.rag import READER_TEMPLATES, ReaderConfig

    d = ReaderConfig()
    g = parser.add_argument_group("reader")
    g.add_argument("--template", default=d.template, choices=sorted(READER_TEMPLATES),
                   help=f"reader prompt (default {d.template})")
    g.add_argument("--max-words", type=positive_int, default=None,
                   help="passage words shown to the reader (default: whole passages)")
    g.add_argument("--max-tokens", type=positive_int, default=d.max_tokens,
                   help=f"new tokens per answer (default {d.max_tokens})")
    g.add_argument("--temperature", type=float, default=d.temperature, help="sampling temperature (default 0)")
    g.add_argument("--llm-seed", type=int, default=d.seed, help=f"seed sent to the endpoint (default {d.seed})")


def reader_config(args):
    from intdistill.data import DataError
    from intdistill.rag import ReaderConfig

    try:
        return ReaderConfig(template=args.template, max_words=args.max_words, max_tokens=args.max_tokens,
                            temperature=args.temperature, seed=args.llm_seed)
    except ValueError as e:
        raise DataError(None, None, str(e)) from None


def configure(parser) -> None:
    parser.add_argument("--queries", required=True, help="questions: JSONL with 'answers', BEIR directory or SQuAD JSON")
    parser.add_argument("--corpus", default=None,
                        help="corpus: JSONL, BEIR directory or SQuAD JSON (default: the one recorded in the index)")
    parser.add_argument("--out", required=True, help="predictions JSONL (appended to; questions in it are skipped)")
    parser.add_argument("-k", type=positive_int, default=5, help="passages per question (default 5)")
    add_query_selection_args(parser)
    add_reader_args(parser)
    add_index_args(parser)
    add_llm_args(parser, cache_default=None)
    add_ray_arg(parser)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def run(args) -> int:
    from intdistill.cli import Stopped
    from intdistill.data import load_queries
    from intdistill.rag import IndexRetrieve, answer_questions

    config = reader_config(args)
    queries = select_queries(load_queries(args.queries), args)
    index, retriever = open_index(args, args.k)
    corpus = index_corpus(index, args.index, args.corpus)
    retrieve = IndexRetrieve(index, retriever, allow_mismatch=args.allow_retriever_mismatch, batch_size=args.batch_size)
    unanswerable = sum(1 for q in queries.values() if not q.answers)
    if unanswerable:
        print(f"note: {unanswerable} of {len(queries)} questions have no gold answers: they are answered, not scored",
              file=sys.stderr)
    with open_llm(args) as client:
        print(f"answering {len(queries)} questions with {client.model} from the top {args.k} of {len(index)} "
              f"passages (reader prompt {config.template})", file=sys.stderr)
        result = answer_questions(retrieve, queries, corpus, client, args.k, args.out, config=config,
                                  max_consecutive_failures=args.max_consecutive_failures)
    for line in result.lines():
        print(line, file=sys.stderr)
    print(f"ledger: {result.ledger}", file=sys.stderr)
    for name, value in result.measures().items():
        print(f"{name:<8}{_fmt(value)}")
    print(f"{'scored':<8}{result.n_scored}")
    if result.stopped:
        raise Stopped(f"{result.stopped}; predictions so far are in {args.out}, rerun to go on")
    from intdistill.cli import EXIT_ITEMS_FAILED

    return EXIT_ITEMS_FAILED if result.failed else 0
