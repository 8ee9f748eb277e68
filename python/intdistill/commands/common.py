"""Argument groups and helpers shared by several commands."""

from __future__ import annotations

import argparse
import contextlib
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


def add_llm_args(parser, *, cache_default: str | None = None) -> None:
    g = parser.add_argument_group("LLM endpoint (any OpenAI-compatible chat endpoint)")
    g.add_argument("--llm", metavar="SPEC",
                   help="local:PATH.gguf or local:NAME (see `intdistill llm list`) starts llama.cpp on 127.0.0.1; "
                        "or an http(s) base URL")
    g.add_argument("--llm-base-url", metavar="URL", help="e.g. https://api.openai.com/v1, http://127.0.0.1:8000/v1")
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
            base_url, model = args.llm_base_url, args.llm_model
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
        client = LLMClient(
            base_url,
            model,
            api_key_env=args.api_key_env,
            timeout=timeout,
            max_retries=args.max_retries,
            max_concurrency=concurrency,
            cache=cache,
            max_calls=args.max_calls,
            max_cost=args.max_cost,
            price_in_per_m=args.price_in,
            price_out_per_m=args.price_out,
        )
        yield client
