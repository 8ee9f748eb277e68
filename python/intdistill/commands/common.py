"""Argument groups and helpers shared by several commands."""

from __future__ import annotations

import argparse


def _int_at_least(value: str, minimum: int, expected: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
    if n < minimum:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}")
    return n


def positive_int(value: str) -> int:
    """argparse type: an integer >= 1."""
    return _int_at_least(value, 1, "a positive integer")


def non_negative_int(value: str) -> int:
    """argparse type: an integer >= 0."""
    return _int_at_least(value, 0, "an integer >= 0")


def add_encoding_args(parser) -> None:
    """Options of commands that encode a corpus with a retriever."""
    parser.add_argument("--batch-size", type=positive_int, default=64, help="encoding batch size (default 64)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--cache-dir", default=None,
                        help="keep passage embeddings here as .npy, keyed by retriever weights and corpus text")


def add_ray_arg(parser) -> None:
    """``--ray [ADDRESS]``: Ray workers encode the corpus, Ray actors send the LLM calls (intdistill.ray_backend)."""
    parser.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                        help="use Ray: workers encode the corpus, actors send the LLM calls, one per --llm-base-url "
                             "(ADDRESS: auto = the running cluster, ray://HOST:10001; alone: a Ray on this machine); "
                             "needs intdistill[distributed]")
    parser.add_argument("--ray-workers", type=positive_int, default=None, metavar="N",
                        help="with --ray: encoding workers (default: the cluster's CPUs)")


def ray_encoder(args, retriever):
    """The ``encode`` of :func:`intdistill.candidates.encode_corpus` for ``--ray`` (None without it)."""
    if getattr(args, "ray", None) is None:
        return None
    from intdistill.ray_backend import encoder

    return encoder(retriever, args.ray, workers=args.ray_workers, batch_size=args.batch_size)


def add_index_args(parser) -> None:
    """Options of commands that search an index built by `intdistill index` (see :func:`open_index`)."""
    parser.add_argument("--index", required=True, help="index directory written by `intdistill index`")
    parser.add_argument("--retriever", default=None,
                        help="retriever: local directory or hub name (default: the one recorded in the index)")
    parser.add_argument("--expansion-search", type=positive_int, default=None,
                        help="HNSW search breadth, ef (default: as built)")
    parser.add_argument("--mmap", action="store_true", help="memory-map the index instead of loading it")
    parser.add_argument("--allow-retriever-mismatch", action="store_true",
                        help="search even if the retriever differs from the one that built the index")
    parser.add_argument("--batch-size", type=positive_int, default=64, help="encoding batch size (default 64)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")


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


def add_query_selection_args(parser) -> None:
    """--max-queries / --sample / --seed (applied by :func:`select_queries`)."""
    parser.add_argument("--max-queries", type=positive_int, default=None, help="use at most the first N queries")
    parser.add_argument("--sample", type=positive_int, default=None,
                        help="use a seeded random sample of N queries (in file order)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --sample (default 0)")


def select_queries(queries: dict, args) -> dict:
    """``queries`` cut by ``--sample``/``--seed``/``--max-queries`` (:func:`intdistill.stages.select_queries`)."""
    from intdistill.stages import select_queries as select

    return select(queries, sample=args.sample, seed=args.seed, max_queries=args.max_queries)


def add_llm_args(parser, *, cache_default: str | None = None) -> None:
    """The LLM endpoint flags (:class:`intdistill.stages.llm_steps.LLMOptions`), for commands outside the stages
    layer (`rag`, `ask`)."""
    from intdistill.stages.llm_steps import LLMOptions

    LLMOptions.add_arguments(parser, skip=frozenset({"ray", "ray_workers"}))
    if cache_default is not None:
        parser.set_defaults(cache=cache_default)


def open_llm(args):
    """An LLMClient for the endpoint the flags name (:func:`intdistill.stages.llm_steps.open_llm`)."""
    from intdistill.stages.llm_steps import open_llm as _open

    return _open(args)
