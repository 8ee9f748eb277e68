"""Ask one question: retrieve -k passages from a dense index and let an LLM reader answer from them.

Prints the answer, then its numbered sources (rank, passage id, retrieval score, title and first words),
so the answer can be checked against them. Uses the same index, retriever and LLM options as `rag`.
"""

from __future__ import annotations

import sys

from intdistill.commands.common import add_llm_args, index_corpus, open_index, open_llm, positive_int
from intdistill.commands.rag import INDEX_FIELDS, READER_FIELDS


def configure(parser) -> None:
    parser.add_argument("question", metavar="QUESTION", help="the question (quote it)")
    parser.add_argument("--corpus", default=None,
                        help="corpus: JSONL, BEIR directory or SQuAD JSON (default: the one recorded in the index)")
    parser.add_argument("-k", type=positive_int, default=3, help="passages shown to the reader (default 3)")
    parser.add_argument("--words", type=positive_int, default=30, help="passage words shown per source (default 30)")
    parser.add_argument("--show-output", action="store_true", help="also print the reader's raw text")
    from intdistill.stages.llm_steps import RagConfig

    RagConfig.add_arguments(parser, only=READER_FIELDS | INDEX_FIELDS)  # the reader and index flags of `rag`
    add_llm_args(parser, cache_default=None)


def run(args) -> int:
    from intdistill.data import DataError
    from intdistill.rag import IndexRetrieve, ask

    if not args.question.strip():
        raise DataError(None, None, f"expected a non-empty QUESTION, got {args.question!r}")
    from intdistill.stages.llm_steps import reader_config

    config = reader_config(args)
    index, retriever = open_index(args, args.k)
    corpus = index_corpus(index, args.index, args.corpus)
    from intdistill.stages.llm_steps import hybrid

    retrieve = hybrid(IndexRetrieve(index, retriever, allow_mismatch=args.allow_retriever_mismatch,
                                    batch_size=args.batch_size), args, corpus, index, args.index)
    with open_llm(args) as client:
        # a budget stop (BudgetExceeded) is reported by cli.main: exit 3
        answer = ask(args.question, retrieve, corpus, client, args.k, config=config, snippet_words=args.words)
    print(answer.answer if answer.answer else "(no answer)")
    if args.show_output:
        print(f"\nreader output: {answer.output!r}")
    print("\nsources:")
    for s in answer.sources:
        title = f"{s.title}: " if s.title else ""
        print(f"[{s.rank}] {s.docid} ({s.score:.4f}) {title}{s.snippet}")
    print(f"{client.model}{' (cached)' if answer.cached else ''}; ledger: {client.ledger}", file=sys.stderr)
    return 0
