"""The steps that call the LLM: write training queries (``generate-queries``) and label candidate lists
(``label``), durably (cache, journal, ledger, budget).

Both configurations share :class:`LLMOptions`, the endpoint and its budget; :func:`open_llm` turns them into a
client. A budget stop (``max_calls``/``max_cost``) raises :class:`~intdistill.stages.config.Stopped` after the
items in flight are saved; items whose calls failed after every retry are counted in the returned summary
(``failed``) and listed beside the output, and a rerun retries only them.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

from intdistill.data import DataError
from intdistill.stages.config import StageConfig, Stopped, non_negative_float, option, positive_int
from intdistill.stages.first_stage import EncodingOptions, ray_encoder

LLM = "LLM endpoint (any OpenAI-compatible chat endpoint)"
RAY = "Ray (optional)"


@dataclass(frozen=True)
class LLMOptions(StageConfig):
    """The LLM endpoint and its budget (``--llm``/``--llm-base-url``, cache, retries, limits)."""

    llm: str | None = option(None, "local:PATH.gguf or local:NAME (see `intdistill llm list`) starts llama.cpp on "
                                   "127.0.0.1; or an http(s) base URL", metavar="SPEC", group=LLM)
    llm_base_url: tuple[str, ...] = option((), "e.g. https://api.openai.com/v1, http://127.0.0.1:8000/v1; give it "
                                               "several times to fan the calls out over several endpoints serving "
                                               "the same model (the cache and budget stay one)", repeat=True,
                                           metavar="URL", group=LLM)
    llm_model: str | None = option(None, "model name the endpoint expects", metavar="NAME", group=LLM)
    api_key_env: str = option("OPENAI_API_KEY", "environment variable holding the API key (default OPENAI_API_KEY; "
                                                "none needed locally)", metavar="VAR", group=LLM)
    cache: str | None = option(None, "SQLite cache of every LLM answer (reruns make no call for anything cached)",
                               metavar="PATH", group=LLM)
    timeout: float | None = option(None, "seconds per request (default 120; 900 for a local CPU server)",
                                   type=float, group=LLM)
    max_retries: int = option(5, "retries on 429/5xx/timeouts (default 5)", type=int, group=LLM)
    concurrency: int | None = option(None, "requests in flight at once (default 4; 1 for a local server, which "
                                           "answers one at a time)", type=int, group=LLM)
    max_calls: int | None = option(None, "stop cleanly after this many new (uncached) calls", type=int, group=LLM)
    max_cost: float | None = option(None, "stop cleanly once the estimated cost reaches this", type=float, group=LLM)
    price_in: float = option(0.0, "price per million prompt tokens (for the cost estimate)", type=float, group=LLM)
    price_out: float = option(0.0, "price per million completion tokens", type=float, group=LLM)
    max_consecutive_failures: int | None = option(
        None, "stop early when N items in a row fail after their retries (default 5; 0 = never); an auth error, an "
              "unknown model or nothing listening stops at once", type=int, metavar="N", group=LLM)
    ray: str | None = option(None, "use Ray: workers encode the corpus, actors send the LLM calls, one per "
                                   "--llm-base-url (ADDRESS: auto = the running cluster, ray://HOST:10001; alone: a "
                                   "Ray on this machine); needs intdistill[distributed]", nargs="?", const="local",
                             metavar="ADDRESS", group=RAY)
    ray_workers: int | None = option(None, "with --ray: encoding workers (default: the cluster's CPUs)",
                                     type=positive_int, metavar="N", group=RAY)


@contextlib.contextmanager
def open_llm(cfg):
    """Yield an LLMClient for the endpoint ``cfg`` names (an :class:`LLMOptions`, or parsed flags with the same
    names); a local server is stopped on exit."""
    from intdistill.llm.cache import LLMCache
    from intdistill.llm.client import LLMClient

    with contextlib.ExitStack() as stack:
        server = None
        urls_given = list(cfg.llm_base_url or ())
        if cfg.llm:
            from intdistill.llm.local import resolve_endpoint

            base_url, model, server = resolve_endpoint(cfg.llm)
            if server is not None:
                stack.enter_context(server)
            model = cfg.llm_model or model
        elif urls_given:
            if not cfg.llm_model:
                raise DataError(None, None, "--llm-base-url needs --llm-model (the model name the endpoint serves)")
            base_url, model = urls_given[0], cfg.llm_model
        else:
            raise DataError(None, None, "no LLM endpoint: give --llm local:NAME|PATH|URL, or --llm-base-url and --llm-model")
        local = cfg.llm is not None and server is not None
        timeout = cfg.timeout if cfg.timeout is not None else (900.0 if local else 120.0)
        concurrency = cfg.concurrency if cfg.concurrency is not None else (1 if local else 4)
        if timeout <= 0 or concurrency < 1:
            raise DataError(None, None, f"expected --timeout > 0 and --concurrency >= 1, got {timeout} and {concurrency}")
        cache = LLMCache(cfg.cache) if cfg.cache else None
        if cache is None:
            print("warning: no --cache: LLM answers are not kept for reruns", file=sys.stderr)
        common = dict(api_key_env=cfg.api_key_env, timeout=timeout, max_retries=cfg.max_retries,
                      price_in_per_m=cfg.price_in, price_out_per_m=cfg.price_out)
        urls = (urls_given or [base_url]) if not cfg.llm else [base_url]
        ray_address = getattr(cfg, "ray", None)
        if len(urls) == 1 and ray_address is None:
            client = LLMClient(base_url, model, max_concurrency=concurrency, cache=cache, max_calls=cfg.max_calls,
                               max_cost=cfg.max_cost, **common)
        else:
            from intdistill.llm.fanout import FanOutClient

            senders = None
            if ray_address is not None:
                from intdistill.ray_backend import RayEndpoints

                endpoints = RayEndpoints(ray_address, urls, model, concurrency=concurrency, **common)
                stack.callback(endpoints.close)
                senders = [endpoints.sender(i) for i in range(len(urls))]
            client = FanOutClient(urls, model, senders=senders, per_endpoint_concurrency=concurrency, cache=cache,
                                  max_calls=cfg.max_calls, max_cost=cfg.max_cost, **common)
            print(f"fanning out over {len(urls)} endpoints" + (f" from Ray actors ({ray_address})"
                                                                if ray_address else ""), file=sys.stderr)
        stack.callback(client.close)
        yield client


def _report(summary, client) -> None:
    for line in summary.lines():
        print(line, file=sys.stderr)
    print(f"ledger: {client.ledger}", file=sys.stderr)


def _generate_defaults():
    from intdistill.llm.generate import DEFAULT_TEMPLATE, TEMPLATES

    return tuple(TEMPLATES), DEFAULT_TEMPLATE


_GEN_TEMPLATES, _GEN_TEMPLATE = _generate_defaults()
PROMPT, FILTERS = "the prompt", "filters"


@dataclass(frozen=True)
class GenerateConfig(EncodingOptions, LLMOptions):
    """``intdistill generate-queries``: the LLM writes a training query about each sampled passage (the
    round trip encodes the corpus: :class:`~intdistill.stages.first_stage.EncodingOptions`)."""

    command = "generate-queries"
    corpus: str = option(help="corpus: JSONL, TSV, BEIR directory or SQuAD JSON", required=True)
    out: str = option(help="the generated queries (JSONL); the journal and qrels go beside it", required=True)
    n: int = option(help="passages to write a query about", flag="-n", type=positive_int, required=True)
    seed: int = option(0, "passage sample seed (default 0)", type=int)
    examples: str | None = option(None, "a queries file of your own: the first --n-examples show the LLM their "
                                        "style", group=PROMPT)
    n_examples: int = option(8, "style examples taken from --examples (default 8)", type=positive_int, group=PROMPT)
    template: str = option(_GEN_TEMPLATE, "prompt template", choices=_GEN_TEMPLATES, group=PROMPT)
    max_words: int = option(120, "passage words shown to the LLM (default 120)", type=positive_int, group=PROMPT)
    max_tokens: int = option(48, "new tokens per answer (default 48)", type=positive_int, group=PROMPT)
    max_query_words: int = option(32, "longer queries are dropped (default 32)", type=positive_int, group=FILTERS)
    filter_top: int | None = option(None, "round trip: keep a query only when the first stage (--retriever) ranks "
                                          "its source passage in its top K", type=positive_int, metavar="K",
                                    group=FILTERS)
    retriever: str | None = option(None, "first stage for --filter-top (default: bundled all-MiniLM-L6-v2)",
                                   group=FILTERS)


def generate(cfg: GenerateConfig):
    """Write ``cfg.n`` queries about sampled passages to ``cfg.out``; returns the generation summary (kept and
    dropped per filter, ``failed`` items)."""
    from intdistill.data import load_corpus, load_queries
    from intdistill.llm.errors import BudgetExceeded
    from intdistill.llm.generate import generate_queries
    corpus = load_corpus(cfg.corpus)
    examples = [q.text for q in load_queries(cfg.examples).values()][: cfg.n_examples] if cfg.examples else []

    def round_trip(texts):
        from intdistill.candidates import encode_corpus, exact_search
        from intdistill.models import Retriever

        retriever = Retriever.load(cfg.retriever, device=cfg.device)
        emb = encode_corpus(retriever, corpus, batch_size=cfg.batch_size, progress=sys.stderr.isatty(),
                            cache_dir=cfg.cache_dir, encode=ray_encoder(cfg, retriever))
        ids, _ = exact_search(retriever.encode_queries(texts, batch_size=cfg.batch_size), emb,
                              min(cfg.filter_top, len(corpus)), metric="ip")
        docids = list(corpus)
        return [[docids[i] for i in row] for row in ids]

    with open_llm(cfg) as client:
        print(f"writing queries about {min(cfg.n, len(corpus))} of {len(corpus)} passages with {client.model} "
              f"({'your ' + str(len(examples)) if examples else 'built-in'} examples)", file=sys.stderr)
        try:
            summary = generate_queries(corpus, client, cfg.out, n=cfg.n, seed=cfg.seed, examples=examples,
                                       template=cfg.template, max_words=cfg.max_words, max_tokens=cfg.max_tokens,
                                       max_query_words=cfg.max_query_words,
                                       round_trip=round_trip if cfg.filter_top else None,
                                       round_trip_k=cfg.filter_top,
                                       max_consecutive_failures=cfg.max_consecutive_failures)
        except BudgetExceeded as e:
            raise Stopped(f"{e}; answers so far are in the journal beside {cfg.out}, rerun to go on") from None
        _report(summary, client)
    return summary


PROMPTING = "listwise prompting"


@dataclass(frozen=True)
class LabelConfig(LLMOptions):
    """``intdistill label``: the LLM re-ranks each candidate list (listwise, RankGPT windows)."""

    command = "label"
    candidates: str = option(help="candidates JSONL (from `intdistill candidates`)", required=True)
    corpus: str = option(help="corpus: JSONL, BEIR directory or SQuAD JSON", required=True)
    out: str = option(help="labels JSONL (appended to; existing queries are skipped)", required=True)
    queries: str | None = option(None, "queries file (default: the query texts stored in the candidates file)")
    max_queries: int | None = option(None, "label only the first N queries of the candidates file", type=int)
    top_n: int | None = option(None, "use only each list's first N candidates", type=int, flag=("-n", "--top-n"))
    template: str = option("rankgpt", "prompt template (see intdistill.llm.prompts.TEMPLATES)", group=PROMPTING)
    window: int = option(20, "candidates per call (default 20)", type=int, group=PROMPTING)
    step: int = option(10, "sliding-window step when a list is longer (default 10)", type=int, group=PROMPTING)
    max_words: int = option(100, "passage words shown to the LLM (default 100)", type=int, group=PROMPTING)
    passes: int = option(1, "independent rankings per query, Borda-aggregated", type=int, group=PROMPTING)
    shuffle: bool = option(False, "shuffle the presented order in each pass (position bias)", group=PROMPTING)
    seed: int = option(0, "seed of the shuffles (default 0)", type=int, group=PROMPTING)
    max_tokens: int | None = option(None, "new tokens per call (default: 6 per candidate + 16)", type=int,
                                    group=PROMPTING)


def label(cfg: LabelConfig):
    """Label the candidate lists of ``cfg`` into ``cfg.out`` (resumable); returns the labelling summary."""
    from intdistill.candidates import Candidates
    from intdistill.data import Query, load_corpus, load_queries
    from intdistill.labels import label_candidates
    from intdistill.llm.errors import BudgetExceeded
    from intdistill.llm.listwise import ListwiseConfig

    try:
        listwise = ListwiseConfig(template=cfg.template, window=cfg.window, step=cfg.step, max_words=cfg.max_words,
                                  passes=cfg.passes, shuffle=cfg.shuffle, seed=cfg.seed, max_tokens=cfg.max_tokens)
    except ValueError as e:
        raise DataError(None, None, str(e)) from None
    cands = Candidates.load(cfg.candidates)
    lists = {q: list(c.docids[: cfg.top_n] if cfg.top_n else c.docids) for q, c in cands.items()}
    if cfg.max_queries is not None:
        lists = dict(list(lists.items())[: cfg.max_queries])
    corpus = load_corpus(cfg.corpus)
    if cfg.queries:
        queries = load_queries(cfg.queries)
    else:
        queries = {q: Query(q, c.query) for q, c in cands.items() if c.query}
        if len(queries) < len(cands):
            raise DataError(cfg.candidates, None, "the candidates file holds no query texts: give --queries")
    with open_llm(cfg) as client:
        print(f"labelling {len(lists)} queries with {client.model} (window {listwise.window}, "
              f"{listwise.passes} pass(es), template {listwise.template})", file=sys.stderr)
        try:
            summary = label_candidates(lists, queries, corpus, client, cfg.out, listwise,
                                       max_consecutive_failures=cfg.max_consecutive_failures)
        except BudgetExceeded as e:
            raise Stopped(f"{e}; labels so far are in {cfg.out}, rerun to go on") from None
        _report(summary, client)
    return summary


def _reader_defaults():
    from intdistill.rag import READER_TEMPLATES, ReaderConfig

    return ReaderConfig(), tuple(sorted(READER_TEMPLATES))


_READER, _READER_TEMPLATES = _reader_defaults()
READER, INDEX = "reader", "the index"


@dataclass(frozen=True)
class RagConfig(LLMOptions):
    """``intdistill rag``: retrieve k passages per question from an index, let the LLM reader answer, score."""

    command = "rag"
    queries: str = option(help="questions: JSONL with 'answers', BEIR directory or SQuAD JSON", required=True)
    out: str = option(help="predictions JSONL (appended to; questions in it are skipped)", required=True)
    index: str = option(help="index directory written by `intdistill index`", required=True, group=INDEX)
    corpus: str | None = option(None, "corpus: JSONL, BEIR directory or SQuAD JSON (default: the one recorded in "
                                      "the index)")
    k: int = option(5, "passages per question (default 5)", flag="-k", type=positive_int)
    max_queries: int | None = option(None, "use at most the first N queries", type=positive_int)
    sample: int | None = option(None, "use a seeded random sample of N queries (in file order)", type=positive_int)
    seed: int = option(0, "seed for --sample (default 0)", type=int)
    template: str = option(_READER.template, f"reader prompt (default {_READER.template})", choices=_READER_TEMPLATES,
                           group=READER)
    max_words: int | None = option(None, "passage words shown to the reader (default: whole passages)",
                                   type=positive_int, group=READER)
    max_tokens: int = option(_READER.max_tokens, f"new tokens per answer (default {_READER.max_tokens})",
                             type=positive_int, group=READER)
    temperature: float = option(_READER.temperature, "sampling temperature (default 0)", type=float, group=READER)
    llm_seed: int = option(_READER.seed, f"seed sent to the endpoint (default {_READER.seed})", type=int,
                           group=READER)
    retriever: str | None = option(None, "retriever: local directory or hub name (default: the one recorded in the "
                                         "index)", group=INDEX)
    expansion_search: int | None = option(None, "HNSW search breadth, ef (default: as built)", type=positive_int,
                                          group=INDEX)
    mmap: bool = option(False, "memory-map the index instead of loading it", group=INDEX)
    allow_retriever_mismatch: bool = option(False, "search even if the retriever differs from the one that built "
                                                   "the index", group=INDEX)
    batch_size: int = option(64, "encoding batch size (default 64)", type=positive_int, group=INDEX)
    device: str | None = option(None, "torch device (default: cuda when available, else cpu)", group=INDEX)
    lexical_weight: float = option(0.0, "hybrid search: re-score the top --lexical-pool by 20 x cosine + W x BM25 / the "
                                        "query's bound (the ranker's lexical term; BM25 fitted on the corpus at start) "
                                        "and keep the best k. 0 (the default): dense only", type=non_negative_float,
                                   metavar="W", group=INDEX)
    lexical_pool: int = option(100, "with --lexical-weight: passages re-scored per query (default 100)",
                               type=positive_int, metavar="M", group=INDEX)



def reader_config(opts):
    """The :class:`intdistill.rag.ReaderConfig` of a :class:`RagConfig` (or of parsed flags with its reader
    fields, as `intdistill ask` has); a bad value is a DataError naming it."""
    from intdistill.rag import ReaderConfig

    try:
        return ReaderConfig(template=opts.template, max_words=opts.max_words, max_tokens=opts.max_tokens,
                            temperature=opts.temperature, seed=opts.llm_seed)
    except ValueError as e:
        raise DataError(None, None, str(e)) from None


def hybrid(retrieve, opts, corpus, index, index_path):
    """``retrieve`` with BM25 at query time (:class:`intdistill.rag.HybridRetrieve`) when ``opts.lexical_weight``
    (a :class:`RagConfig`, or parsed flags with its index fields) is positive, else ``retrieve`` itself.
    ``index`` (loaded from ``index_path``) bounds the pool and may hold the BM25 statistics
    (:func:`intdistill.stages.judge.index_bm25`)."""
    if not opts.lexical_weight:
        return retrieve
    from intdistill.candidates import describe_hybrid
    from intdistill.rag import HybridRetrieve
    from intdistill.stages.judge import index_bm25

    bm25, how = index_bm25(index, index_path, corpus, opts.corpus)
    wrapped = HybridRetrieve(retrieve, corpus, opts.lexical_weight, pool=opts.lexical_pool, limit=len(index),
                             bm25=bm25)
    print(f"hybrid: {describe_hybrid(wrapped.pool_for(opts.k), opts.lexical_weight)}; {how}", file=sys.stderr)
    return wrapped


def rag(cfg: RagConfig):
    """Answer the questions of ``cfg`` from the top ``k`` of its index, appending to ``cfg.out`` (resumable);
    returns the :class:`intdistill.rag.RagResult` (its ``stopped`` says whether a budget stopped it)."""
    from intdistill.data import load_queries
    from intdistill.rag import IndexRetrieve, answer_questions
    from intdistill.stages.judge import index_corpus, open_index, select_queries

    reader = reader_config(cfg)
    queries = select_queries(load_queries(cfg.queries), sample=cfg.sample, seed=cfg.seed, max_queries=cfg.max_queries)
    index, retriever = open_index(cfg.index, cfg.k, retriever=cfg.retriever, mmap=cfg.mmap,
                                  expansion_search=cfg.expansion_search, device=cfg.device,
                                  allow_mismatch=cfg.allow_retriever_mismatch)
    corpus = index_corpus(index, cfg.index, cfg.corpus)
    retrieve = hybrid(IndexRetrieve(index, retriever, allow_mismatch=cfg.allow_retriever_mismatch,
                                    batch_size=cfg.batch_size), cfg, corpus, index, cfg.index)
    unanswerable = sum(1 for q in queries.values() if not q.answers)
    if unanswerable:
        print(f"note: {unanswerable} of {len(queries)} questions have no gold answers: they are answered, not scored",
              file=sys.stderr)
    with open_llm(cfg) as client:
        print(f"answering {len(queries)} questions with {client.model} from the top {cfg.k} of {len(index)} "
              f"passages (reader prompt {reader.template})", file=sys.stderr)
        result = answer_questions(retrieve, queries, corpus, client, cfg.k, cfg.out, config=reader,
                                  max_consecutive_failures=cfg.max_consecutive_failures)
        _report(result, client)
    return result
