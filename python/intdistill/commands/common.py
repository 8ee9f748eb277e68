"""Argument groups and helpers shared by several commands."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys


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
    """The corpus whose passages ``index`` holds: ``corpus_path`` when given, else the one recorded in the
    index's meta.json. DataError when there is none, or when some indexed id is not in it (another corpus)."""
    from intdistill.data import DataError, load_corpus

    if corpus_path is None:
        recorded = index.meta.corpus_path
        if not recorded:
            raise DataError(index_path, None, "the index records no corpus file: give --corpus")
        if not os.path.exists(recorded):
            raise DataError(index_path, None, f"the corpus recorded in the index, {recorded}, is not there: "
                                              "give --corpus")
        corpus_path = recorded
    corpus = load_corpus(corpus_path)
    missing = [d for d in index.docids if d not in corpus]
    if missing:
        raise DataError(corpus_path, None, f"expected every indexed passage in the corpus, got {len(missing)} of "
                                           f"{len(index.docids)} missing (e.g. {missing[0]!r}): give the corpus the "
                                           f"index was built from")
    return corpus


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
    g = parser.add_argument_group("LLM endpoint (any OpenAI-compatible chat endpoint)")
    g.add_argument("--llm", metavar="SPEC",
                   help="local:PATH.gguf or local:NAME (see `intdistill llm list`) starts llama.cpp on 127.0.0.1; "
                        "or an http(s) base URL")
    g.add_argument("--llm-base-url", metavar="URL", action="append",
                   help="e.g. https://api.openai.com/v1, http://127.0.0.1:8000/v1; give it several times to fan the "
                        "calls out over several endpoints serving the same model (the cache and budget stay one)")
    g.add_argument("--llm-model", metavar="NAME", help="model name the endpoint expects")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                   help="environment variable holding the API key (default OPENAI_API_KEY; none needed locally)")
    g.add_argument("--cache", default=cache_default, metavar="PATH",
                   help="SQLite cache of every LLM answer (reruns make no call for anything cached)")
    g.add_argument("--timeout", type=float, help="seconds per request (default 120; 900 for a local CPU server)")
    g.add_argument("--max-retries", type=int, default=5, help="retries on 429/5xx/timeouts (default 5)")
    g.add_argument("--concurrency", type=int,
                   help="requests in flight at once (default 4; 1 for a local server, which answers one at a time)")
    g.add_argument("--max-calls", type=int, help="stop cleanly after this many new (uncached) calls")
    g.add_argument("--max-cost", type=float, help="stop cleanly once the estimated cost reaches this")
    g.add_argument("--price-in", type=float, default=0.0, help="price per million prompt tokens (for the cost estimate)")
    g.add_argument("--price-out", type=float, default=0.0, help="price per million completion tokens")
    g.add_argument("--max-consecutive-failures", type=int, default=None, metavar="N",
                   help="stop early when N items in a row fail after their retries (default 5; 0 = never); an "
                        "auth error, an unknown model or nothing listening stops at once")


@contextlib.contextmanager
def open_llm(args):
    """Yield an LLMClient for the endpoint the arguments name; a local server is stopped on exit."""
    from intdistill.data import DataError
    from intdistill.llm.cache import LLMCache
    from intdistill.llm.client import LLMClient

    with contextlib.ExitStack() as stack:
        server = None
        if args.llm:
            from intdistill.llm.local import resolve_endpoint

            base_url, model, server = resolve_endpoint(args.llm)
            if server is not None:
                stack.enter_context(server)
            model = args.llm_model or model
        elif args.llm_base_url:
            if not args.llm_model:
                raise DataError(None, None, "--llm-base-url needs --llm-model (the model name the endpoint serves)")
            base_url, model = args.llm_base_url[0], args.llm_model
        else:
            raise DataError(None, None, "no LLM endpoint: give --llm local:NAME|PATH|URL, or --llm-base-url and --llm-model")
        local = args.llm is not None and server is not None
        timeout = args.timeout if args.timeout is not None else (900.0 if local else 120.0)
        concurrency = args.concurrency if args.concurrency is not None else (1 if local else 4)
        if timeout <= 0 or concurrency < 1:
            raise DataError(None, None, f"expected --timeout > 0 and --concurrency >= 1, got {timeout} and {concurrency}")
        cache = LLMCache(args.cache) if args.cache else None
        if cache is None:
            print("warning: no --cache: LLM answers are not kept for reruns", file=sys.stderr)
        common = dict(api_key_env=args.api_key_env, timeout=timeout, max_retries=args.max_retries,
                      price_in_per_m=args.price_in, price_out_per_m=args.price_out)
        urls = list(args.llm_base_url or [base_url]) if not args.llm else [base_url]
        ray_address = getattr(args, "ray", None)
        if len(urls) == 1 and ray_address is None:
            client = LLMClient(base_url, model, max_concurrency=concurrency, cache=cache, max_calls=args.max_calls,
                               max_cost=args.max_cost, **common)
        else:
            from intdistill.llm.fanout import FanOutClient

            senders = None
            if ray_address is not None:
                from intdistill.ray_backend import RayEndpoints

                endpoints = RayEndpoints(ray_address, urls, model, concurrency=concurrency, **common)
                stack.callback(endpoints.close)
                senders = [endpoints.sender(i) for i in range(len(urls))]
            client = FanOutClient(urls, model, senders=senders, per_endpoint_concurrency=concurrency, cache=cache,
                                  max_calls=args.max_calls, max_cost=args.max_cost, **common)
            print(f"fanning out over {len(urls)} endpoints" + (f" from Ray actors ({ray_address})"
                                                                if ray_address else ""), file=sys.stderr)
        stack.callback(client.close)
        yield client


def finish_llm_run(lines, client, failed: int) -> int:
    """Print a run's summary lines and the client's ledger (stderr); the exit code: 4 when items failed."""
    from intdistill.cli import EXIT_ITEMS_FAILED

    for line in lines:
        print(line, file=sys.stderr)
    print(f"ledger: {client.ledger}", file=sys.stderr)
    return EXIT_ITEMS_FAILED if failed else 0
