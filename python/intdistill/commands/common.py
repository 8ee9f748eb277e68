"""Helpers of the commands outside the stages layer (`search`, `ask`, `label-report`): the index and LLM flags
of the stage configurations, read from parsed flags."""

from __future__ import annotations

from intdistill.stages.config import positive_int  # noqa: F401  (the argparse type of those commands' own flags)


def open_index(args, k: int):
    """Load ``args.index`` (``--mmap``, ``--expansion-search``) and its retriever (``--retriever``, else the one
    recorded in meta.json), checked to fit (:func:`intdistill.stages.open_index`)."""
    from intdistill.stages import open_index as _open

    return _open(args.index, k, retriever=args.retriever, mmap=args.mmap, expansion_search=args.expansion_search,
                 device=args.device, allow_mismatch=args.allow_retriever_mismatch)


def index_corpus(index, index_path: str, corpus_path: str | None):
    """The corpus whose passages ``index`` holds (:func:`intdistill.stages.judge.index_corpus`)."""
    from intdistill.stages.judge import index_corpus as _index_corpus

    return _index_corpus(index, index_path, corpus_path)


def add_llm_args(parser, *, cache_default: str | None = None) -> None:
    """The LLM endpoint flags (:class:`intdistill.stages.llm_steps.LLMOptions`), for commands outside the stages
    layer (`ask`)."""
    from intdistill.stages.llm_steps import LLMOptions

    LLMOptions.add_arguments(parser, skip=frozenset({"ray", "ray_workers"}))
    if cache_default is not None:
        parser.set_defaults(cache=cache_default)


def open_llm(args):
    """An LLMClient for the endpoint the flags name (:func:`intdistill.stages.llm_steps.open_llm`)."""
    from intdistill.stages.llm_steps import open_llm as _open

    return _open(args)
