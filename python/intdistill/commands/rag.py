"""Retrieval-augmented QA over a dense index: retrieve -k passages per question, let an LLM reader answer
in a few words, score the answers (SQuAD EM / F1) and the retrieval (Acc@k: a gold answer in the k passages).

Writes one line per question to --out as soon as it is answered (retrieved ids and scores, the reader's raw
text, the parsed answer, the gold answers, EM, F1); rerunning the same command resumes, and every LLM answer
comes from --cache for free. Questions without gold answers are answered but not scored. The means go to
stdout; progress, counts and the LLM ledger to stderr. A budget stop (--max-calls / --max-cost) prints the
means so far and exits 3.
"""

from __future__ import annotations

import argparse

READER_FIELDS = frozenset({"template", "max_words", "max_tokens", "temperature", "llm_seed"})
INDEX_FIELDS = frozenset({"index", "retriever", "expansion_search", "mmap", "allow_retriever_mismatch", "batch_size",
                          "device", "lexical_weight", "lexical_pool"})


def configure(parser: argparse.ArgumentParser) -> None:
    from intdistill.stages.llm_steps import RagConfig

    RagConfig.add_arguments(parser)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def run(args: argparse.Namespace) -> int:
    from intdistill.cli import EXIT_ITEMS_FAILED, Stopped
    from intdistill.stages.llm_steps import RagConfig, rag

    result = rag(RagConfig.from_args(args))
    for name, value in result.measures().items():
        print(f"{name:<8}{_fmt(value)}")
    print(f"{'scored':<8}{result.n_scored}")
    if result.stopped:
        raise Stopped(f"{result.stopped}; predictions so far are in {args.out}, rerun to go on")
    return EXIT_ITEMS_FAILED if result.failed else 0
