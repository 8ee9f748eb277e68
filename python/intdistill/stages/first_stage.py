"""The first stage's steps: candidate lists for the training queries, and a retriever's index of the corpus.

:func:`candidates` is ``intdistill candidates`` (and the pipeline's ``candidates`` stage); :func:`build_index`
is ``intdistill index`` (the ``index`` stage). Diagnostics go to stderr; the results come back as objects.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from dataclasses import dataclass

from intdistill.stages.config import (StageConfig, non_negative_float, non_negative_int, option, positive_int,
                                      unit_interval)

logger = logging.getLogger(__name__)

ENCODING = "encoding the corpus"
RUN_SUFFIXES = (".trec", ".run")  # an --out ending so is written as a TREC run, else as candidates JSONL
_RAY_HELP = ("use Ray: workers encode the corpus, actors send the LLM calls, one per --llm-base-url (ADDRESS: auto = "
             "the running cluster, ray://HOST:10001; alone: a Ray on this machine); needs intdistill[distributed]")


def ray_encoder(cfg, retriever):
    """The ``encode`` of :func:`intdistill.candidates.encode_corpus` for a configuration with ``ray`` set (None
    without it): Ray workers encode the corpus (:mod:`intdistill.ray_backend`)."""
    if getattr(cfg, "ray", None) is None:
        return None
    from intdistill.ray_backend import encoder

    return encoder(retriever, cfg.ray, workers=cfg.ray_workers, batch_size=cfg.batch_size)


@dataclass(frozen=True)
class EncodingOptions(StageConfig):
    """How a stage encodes the corpus with the retriever (batch, device, embedding cache, Ray workers)."""

    batch_size: int = option(64, "encoding batch size (default 64)", type=positive_int, group=ENCODING)
    device: str | None = option(None, "torch device (default: cuda when available, else cpu)", group=ENCODING)
    cache_dir: str | None = option(None, "keep passage embeddings here as .npy, keyed by retriever weights and "
                                         "corpus text", group=ENCODING)
    ray: str | None = option(None, _RAY_HELP, nargs="?", const="local", metavar="ADDRESS", group=ENCODING)
    ray_workers: int | None = option(None, "with --ray: encoding workers (default: the cluster's CPUs)",
                                     type=positive_int, metavar="N", group=ENCODING)


@dataclass(frozen=True)
class CandidatesConfig(EncodingOptions):
    """``intdistill candidates``: the top n passages of each query by exact dense search."""

    command = "candidates"
    corpus: str = option(help="corpus: JSONL, BEIR directory or SQuAD JSON", required=True)
    queries: str = option(help="queries: JSONL (or what intdistill.data reads)", required=True)
    n: int = option(help="candidates per query", flag="-n", type=positive_int, required=True)
    out: str = option(help="output: .jsonl candidates, or a TREC run if it ends in .trec/.run", required=True)
    retriever: str | None = option(None, "retriever: local directory or hub name (default: bundled all-MiniLM-L6-v2)")
    qrels: str | None = option(None, "only use queries judged in these qrels (TREC or BEIR TSV)")
    max_queries: int | None = option(None, "use at most the first N queries", type=positive_int)
    sample: int | None = option(None, "use a seeded random sample of N queries (in file order)", type=positive_int)
    seed: int = option(0, "seed for --sample (default 0)", type=int)
    lexical_weight: float = option(0.0, "hybrid retrieval: re-score the dense top --lexical-pool by 20 x cosine + "
                                        "W x BM25 (fitted on --corpus) / the query's bound, the ranker's lexical term "
                                        "in train-ranker's units, and keep the best n. 0 (the default): dense only",
                                   type=non_negative_float, metavar="W")
    lexical_pool: int = option(100, "with --lexical-weight: dense candidates re-scored per query (default 100)",
                               type=positive_int, metavar="M")


def candidates(cfg: CandidatesConfig):
    """Mine the candidate lists of ``cfg`` and write them to ``cfg.out``; returns the
    :class:`~intdistill.candidates.Candidates`. With ``qrels``, only judged queries are used and the pooled
    recall of their relevant passages is reported on stderr."""
    from intdistill import data
    from intdistill.candidates import first_stage
    from intdistill.models import Retriever
    from intdistill.stages.judge import select_queries

    corpus = data.load_corpus(cfg.corpus)
    queries = data.load_queries(cfg.queries)
    if not corpus:
        raise data.DataError(cfg.corpus, None, "expected at least one passage, got an empty corpus")
    if cfg.n > len(corpus):
        raise data.DataError(cfg.corpus, None, f"expected at least -n {cfg.n} passages, got {len(corpus)}")
    qrels = None
    if cfg.qrels is not None:
        qrels = data.load_qrels(cfg.qrels)
        unknown = [q for q in qrels if q not in queries]
        if unknown:
            logger.warning("%d judged queries of %s are not in %s (e.g. %r)", len(unknown), cfg.qrels,
                           cfg.queries, unknown[0])
        queries = {qid: q for qid, q in queries.items() if qid in qrels}
    if not queries:
        where = cfg.qrels if qrels is not None else cfg.queries
        raise data.DataError(where, None, "expected at least one query to retrieve for, got none")
    queries = select_queries(queries, sample=cfg.sample, seed=cfg.seed, max_queries=cfg.max_queries)

    from intdistill.candidates import describe_hybrid, lexical_rescore, rescore_pool

    pool = rescore_pool(cfg.n, cfg.lexical_pool, len(corpus)) if cfg.lexical_weight > 0 else cfg.n
    t0 = time.perf_counter()
    retriever = Retriever.load(cfg.retriever, device=cfg.device)
    t1 = time.perf_counter()
    cands = first_stage(retriever, corpus, queries, pool, batch_size=cfg.batch_size, progress=True,
                        cache_dir=cfg.cache_dir, encode=ray_encoder(cfg, retriever))
    if cfg.lexical_weight > 0:
        cands = lexical_rescore(cands, corpus, cfg.lexical_weight, cfg.n)
        print(f"hybrid: {describe_hybrid(pool, cfg.lexical_weight)}", file=sys.stderr)
    t2 = time.perf_counter()
    if str(cfg.out).endswith(RUN_SUFFIXES):
        data.save_run(cands.to_run(), cfg.out)
    else:
        cands.save(cfg.out)
    print(f"{len(cands)} queries x {cfg.n} candidates from {len(corpus)} passages -> {cfg.out} "
          f"(load {t1 - t0:.1f}s, encode+search {t2 - t1:.1f}s)", file=sys.stderr)
    if qrels is not None:
        found = total = 0
        for qid, cl in cands.items():
            relevant = {d for d, rel in qrels[qid].items() if rel > 0}
            total += len(relevant)
            found += len(relevant.intersection(cl.docids))
        if total:
            print(f"judged-relevant documents among the candidates: {found}/{total} "
                  f"(pooled recall {found / total:.4f})", file=sys.stderr)
    return cands


def _index_defaults():
    from intdistill.index import DEFAULT_CONNECTIVITY, DEFAULT_EXPANSION_ADD, DEFAULT_EXPANSION_SEARCH, DTYPES, METRICS

    return DEFAULT_CONNECTIVITY, DEFAULT_EXPANSION_ADD, DEFAULT_EXPANSION_SEARCH, DTYPES, METRICS


_M, _EF_ADD, _EF, _DTYPES, _METRICS = _index_defaults()


@dataclass(frozen=True)
class IndexConfig(EncodingOptions):
    """``intdistill index``: encode the corpus with the retriever and index it with usearch (HNSW)."""

    command = "index"
    corpus: str = option(help="corpus: JSONL, BEIR directory or SQuAD JSON", required=True)
    out: str = option(help="index directory to write (created if missing)", required=True)
    retriever: str | None = option(None, "retriever: local directory or hub name (default: bundled all-MiniLM-L6-v2)")
    metric: str | None = option(None, "cos or ip (default: cos when the retriever normalises its embeddings, else ip)",
                                choices=_METRICS)
    dtype: str = option("f32", "storage of passage vectors (default f32; i8 needs --metric cos)", choices=_DTYPES)
    connectivity: int = option(_M, f"HNSW links per node, M (default {_M})", type=positive_int)
    expansion_add: int = option(_EF_ADD, f"HNSW build breadth, efConstruction (default {_EF_ADD})",
                                type=positive_int)
    expansion_search: int = option(_EF, f"HNSW search breadth, ef (default {_EF})", type=positive_int)
    queries: str | None = option(None, "queries for the recall check (default: sampled passages)")
    check_sample: int = option(1000, "queries (or passages) in the recall check; 0 skips it (default 1000)",
                               type=non_negative_int)
    seed: int = option(0, "seed of the recall-check sample (default 0)", type=int)
    target_recall: float | None = option(
        None, "double --expansion-search (up to 4096) until the recall check reaches R, e.g. 0.98; the ef found is "
              "saved with the index (large indexes need more than the default)", type=unit_interval, metavar="R")


def build_index(cfg: IndexConfig):
    """Build the index of ``cfg``, check its recall against exact search, and save it to ``cfg.out``; returns
    the :class:`~intdistill.index.DenseIndex`. The sizes, times and recall go to stderr."""
    from intdistill import data
    from intdistill.index import INDEX_FILE, DenseIndex
    from intdistill.models import Retriever

    corpus = data.load_corpus(cfg.corpus)
    if not corpus:
        raise data.DataError(cfg.corpus, None, "expected at least one passage, got an empty corpus")
    queries = data.load_queries(cfg.queries) if cfg.queries is not None else None
    if queries is not None and not queries:
        raise data.DataError(cfg.queries, None, "expected at least one query for the recall check, got none")
    if cfg.target_recall is not None and not cfg.check_sample:
        raise data.DataError(None, None, "--target-recall needs the recall check: expected --check-sample >= 1, got 0")
    if cfg.dtype == "i8" and cfg.metric == "ip":
        raise data.DataError(None, None, "--dtype i8 needs --metric cos (usearch's int8 inner product is not in "
                                         "the embeddings' units)")

    t0 = time.perf_counter()
    retriever = Retriever.load(cfg.retriever, device=cfg.device)
    if cfg.dtype == "i8" and cfg.metric is None and not retriever.normalize:
        raise data.DataError(None, None, f"--dtype i8 needs --metric cos; retriever {retriever.name!r} does not "
                                         f"normalise, so the default metric is ip")
    check_queries = None
    if queries is not None and cfg.check_sample:
        texts = [q.text for q in queries.values()]
        if len(texts) > cfg.check_sample:  # encode only the sample
            texts = [texts[i] for i in sorted(random.Random(cfg.seed).sample(range(len(texts)), cfg.check_sample))]
        check_queries = retriever.encode_queries(texts, batch_size=cfg.batch_size, progress=True)
    t1 = time.perf_counter()
    index = DenseIndex.build(
        retriever, corpus, metric=cfg.metric, dtype=cfg.dtype, connectivity=cfg.connectivity,
        expansion_add=cfg.expansion_add, expansion_search=cfg.expansion_search, batch_size=cfg.batch_size,
        progress=True, check_sample=cfg.check_sample, check_queries=check_queries, seed=cfg.seed,
        cache_dir=cfg.cache_dir, target_recall=cfg.target_recall, encode=ray_encoder(cfg, retriever),
    )
    out = index.save(cfg.out)
    from intdistill.candidates import corpus_bm25
    from intdistill.llm.gguf import format_size

    t_lex = time.perf_counter()
    lexical = corpus_bm25(corpus).save(out)  # for --lexical-weight at query time
    t_lex = time.perf_counter() - t_lex
    t2 = time.perf_counter()
    m = index.meta
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"{m.count} passages x {m.dim}-d ({m.metric}, {m.dtype}) -> {out} "
          f"({size / 1e6:.1f} MB, of which {INDEX_FILE} {(out / INDEX_FILE).stat().st_size / 1e6:.1f} MB)",
          file=sys.stderr)
    print(f"time: load {t1 - t0:.1f}s, encode {m.encode_seconds:.1f}s, build {m.build_seconds:.1f}s, "
          f"BM25 statistics {t_lex:.1f}s ({lexical.name}, {format_size(lexical.stat().st_size)}), "
          f"total {t2 - t0:.1f}s", file=sys.stderr)
    if m.check_recall is not None:
        print(f"recall@{m.check_k} vs exact search: {m.check_recall:.4f} on {m.check_queries} sampled {m.check_source} "
              f"at ef {m.expansion_search}", file=sys.stderr)
        if m.target_recall is not None:
            how = (f"ef raised from {m.tuned_from} to {m.expansion_search}" if m.tuned_from is not None
                   else f"met at ef {m.expansion_search}")
            met = "reached" if m.check_recall >= m.target_recall else "NOT reached (denser graph needed)"
            print(f"target recall {m.target_recall:g}: {met}; {how}", file=sys.stderr)
    else:
        print("recall check skipped (--check-sample 0)", file=sys.stderr)
    return index
