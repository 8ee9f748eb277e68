"""Retrieval evaluation: measures named the standard way, computed by the Rust core.

Measures are values named ``<Name>@<k>`` (``nDCG@10``, ``R@100``, ``P@5``, ``RR@10``, ``AP@100``,
``Success@1``, ``Acc@20``), parsed from strings against :data:`REGISTRY`; the name is matched
case-insensitively and reported in its canonical spelling. Definitions are trec_eval's
(``rust/src/metrics/measures.rs`` has the formulas); the numbers equal pytrec_eval's:

==============  =====================================================================  ================
measure         value for one query                                                     trec_eval name
==============  =====================================================================  ================
``nDCG@k``      ``Σ_{rank<=k} rel / log2(rank+1)`` over the ideal ordering of all        ``ndcg_cut_k``
                judged rels of the query (gain = rel, linear)
``R@k``         relevant in top k / relevant judged (R)                                  ``recall_k``
``P@k``         relevant in top k / k                                                    ``P_k``
``RR@k``        1 / rank of the first relevant doc, if <= k                              (``recip_rank``
                                                                                         on runs cut at k)
``AP@k``        Σ precision at each relevant rank <= k, divided by R                     ``map_cut_k``
``Success@k``   1 if a relevant doc is in the top k                                      ``success_k``
``Acc@k``       1 if a passage in the top k contains an answer string (answer-based,     --
                DPR-style top-k accuracy; needs ``queries`` and ``corpus``)
==============  =====================================================================  ================

Ranking and relevance follow trec_eval exactly: scores are compared as float32, ties are broken by
doc id descending; a doc is relevant when ``rel >= 1``; ``rel <= 0`` is non-relevant with no gain.

Which queries count (qrels measures):

- every query with at least one judgement in ``qrels`` is scored and counts in the mean;
- a judged query with no results in the run scores 0 (``Evaluation.n_missing`` counts them), as
  ``trec_eval -c`` does;
- a judged query with no relevant doc (all ``rel <= 0``) scores 0 on every measure and counts in
  the mean, as trec_eval and pytrec_eval do;
- run queries without judgements are ignored (``Evaluation.n_ignored`` counts them).

``Acc@k`` values come from :func:`intdistill.answers.accuracy_at_k`; their mean is over the queries it
scores.

Two ways in, same numbers: :func:`evaluate` reads ``{qid: {docid: ...}}`` dicts directly;
:func:`prepare` / :func:`prepare_topk` turn qrels and a run (dicts, or an index's top-k arrays) into
CSR arrays once, and :func:`evaluate_prepared` then evaluates them fast (parallel, without the GIL).

Also here: :func:`ann_recall` (approximate vs exact nearest neighbours), :func:`kendall_tau` (rank
correlation of two permutations), :func:`paired_test` (significance of a before/after change) and
:func:`compare` (several runs against a baseline, every measure tested).

The package re-exports :func:`evaluate` and :class:`Evaluation` (``intdistill.evaluate(qrels, run, measures)``);
everything else is imported from this module (``from intdistill.metrics import prepare``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import NamedTuple, Union

import numpy as np

__all__ = [
    "ANSWERS",
    "DEFAULTS",
    "DEFAULT_MEASURES",
    "default_measures",
    "REGISTRY",
    "Evaluation",
    "Measure",
    "MeasureSpec",
    "PairedTest",
    "Prepared",
    "Comparison",
    "ann_recall",
    "compare",
    "evaluate",
    "evaluate_prepared",
    "kendall_tau",
    "paired_test",
    "parse_measure",
    "parse_measures",
    "prepare",
    "prepare_topk",
]

ANSWERS = "answers"  # MeasureSpec.kind of answer-based measures (computed by intdistill.answers)


@dataclass(frozen=True)
class MeasureSpec:
    """One family of measures: its canonical name, the Rust kind that computes it, a definition."""

    name: str  # canonical spelling, e.g. "nDCG"
    kind: str  # one of _core.METRIC_KINDS, or ANSWERS
    definition: str


REGISTRY: dict[str, MeasureSpec] = {
    spec.name.lower(): spec
    for spec in (
        MeasureSpec("nDCG", "ndcg", "nDCG with gain = rel and 1/log2(rank+1) discount (trec_eval ndcg_cut)"),
        MeasureSpec("R", "recall", "recall: relevant in top k / relevant judged (trec_eval recall)"),
        MeasureSpec("P", "precision", "precision: relevant in top k / k (trec_eval P)"),
        MeasureSpec("RR", "rr", "reciprocal rank of the first relevant doc within the top k"),
        MeasureSpec("AP", "ap", "average precision cut at k, divided by all relevant (trec_eval map_cut)"),
        MeasureSpec("Success", "success", "1 if a relevant doc is in the top k (trec_eval success)"),
        MeasureSpec("Acc", ANSWERS, "1 if a top-k passage contains an answer string (needs queries, corpus)"),
    )
}

# Default measures, in one place: use -> (judged by qrels, judged by answer strings). The first of a dev set's
# measures picks the best epoch.
DEFAULTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "evaluate": (("nDCG@10", "R@100", "RR@10", "P@10", "AP@100"), ("Acc@1", "Acc@5", "Acc@20")),  # the command
    "test": (("nDCG@10", "R@100", "RR@10"), ("Acc@1", "Acc@5", "Acc@20")),  # the pipeline's test comparison
    "ranker-dev": (("nDCG@10", "RR@10"), ("Acc@1", "Acc@5")),  # stage 1's dev lists (a re-ranking of top 10s)
    "retriever-dev": (("nDCG@10", "R@100"), ("Acc@20", "Acc@100")),  # stage 2's dev queries (full retrieval)
}
DEFAULT_MEASURES: tuple[str, ...] = DEFAULTS["evaluate"][0]


def default_measures(use: str, *, qrels: bool) -> tuple[str, ...]:
    """The default measures of ``use`` (a key of :data:`DEFAULTS`) when judging by qrels or by answers."""
    return DEFAULTS[use][0 if qrels else 1]


class Measure(NamedTuple):
    """A parsed measure: ``name`` is canonical (``nDCG@10``), ``k >= 1`` its cutoff."""

    name: str
    spec: MeasureSpec
    k: int


def _known() -> str:
    return ", ".join(f"{s.name}@k" for s in REGISTRY.values())


def parse_measure(text: Union[str, Measure]) -> Measure:
    """``"nDCG@10"`` -> ``Measure("nDCG@10", REGISTRY["ndcg"], 10)``; ValueError names what was wrong."""
    if isinstance(text, Measure):
        return text
    if not isinstance(text, str):
        raise ValueError(f"a measure is a string like 'nDCG@10', got {text!r}")
    base, at, cutoff = text.strip().partition("@")
    spec = REGISTRY.get(base.lower())
    if spec is None:
        raise ValueError(f"unknown measure {text!r}; known measures: {_known()} (k >= 1)")
    if not at:
        raise ValueError(f"measure {text!r} needs a cutoff: {spec.name}@k with k >= 1, e.g. {spec.name}@10")
    try:
        k = int(cutoff)
    except ValueError:
        raise ValueError(f"measure {text!r}: cutoff must be an integer k >= 1, got {cutoff!r}") from None
    if k < 1 or str(k) != cutoff.strip():
        raise ValueError(f"measure {text!r}: cutoff must be an integer k >= 1, got {cutoff!r}")
    return Measure(f"{spec.name}@{k}", spec, k)


def parse_measures(texts: Union[str, Measure, Iterable[Union[str, Measure]]]) -> tuple[Measure, ...]:
    """Parses each name; duplicates (after canonicalisation) are dropped, order is kept."""
    if isinstance(texts, (str, Measure)):
        texts = [texts]
    out: dict[str, Measure] = {}
    for t in texts:
        m = parse_measure(t)
        out.setdefault(m.name, m)
    if not out:
        raise ValueError(f"no measures given; known measures: {_known()}")
    return tuple(out.values())


@dataclass(frozen=True)
class Evaluation:
    """Result of an evaluation.

    ``mean[name]``: the mean over the scored queries; ``per_query[qid][name]``: one query's value
    (qrels queries in qrels order, then answer-only queries). ``n_queries``: distinct queries in
    ``per_query``; ``n_missing``: judged queries absent from the run (scored 0, in the mean);
    ``n_ignored``: run queries without judgements (not scored).
    """

    mean: dict[str, float]
    per_query: dict[str, dict[str, float]]
    n_queries: int
    n_missing: int = 0
    n_ignored: int = 0

    @property
    def measures(self) -> tuple[str, ...]:
        return tuple(self.mean)


def _rows(qids: Sequence[str], values: np.ndarray, names: Sequence[str]) -> dict[str, dict[str, float]]:
    return {q: dict(zip(names, row)) for q, row in zip(qids, values.tolist())}


def _means(values: np.ndarray, names: Sequence[str], what: str) -> dict[str, float]:
    if values.shape[0] == 0:
        raise ValueError(f"nothing to average: {what}")
    return dict(zip(names, values.mean(axis=0).tolist()))


def _kinds(measures: Sequence[Measure]) -> list[tuple[str, int]]:
    return [(m.spec.kind, m.k) for m in measures]


def evaluate(
    qrels: Mapping[str, Mapping[str, int]] | None,
    run: Mapping[str, Mapping[str, float]],
    measures: Union[str, Iterable[Union[str, Measure]]],
    *,
    queries: Mapping | None = None,
    corpus: Mapping | None = None,
) -> Evaluation:
    """Evaluates ``run`` ``{qid: {docid: score}}`` against ``qrels`` ``{qid: {docid: int rel}}``.

    ``measures``: names such as ``"nDCG@10"`` (see :data:`REGISTRY`). Plain dicts and
    ``intdistill.data.Qrels`` / ``Run`` both work. ``Acc@k`` measures need ``queries``
    (``{qid: Query}`` with ``.answers``) and ``corpus`` (``{docid: Passage}``) and no qrels; ``qrels``
    may be ``None`` when only ``Acc@k`` is asked for. See the module docstring for which queries
    count. Raises ValueError for unknown measures, missing inputs, or bad values (naming them).
    """
    ms = parse_measures(measures)
    ranked = [m for m in ms if m.spec.kind != ANSWERS]
    answer = [m for m in ms if m.spec.kind == ANSWERS]
    if not isinstance(run, Mapping):
        raise ValueError(f"run must be a dict {{qid: {{docid: score}}}}, got {type(run).__name__}")
    per_query: dict[str, dict[str, float]] = {}
    mean: dict[str, float] = {}
    n_missing = n_ignored = 0
    if ranked:
        if qrels is None:
            raise ValueError(f"measures {', '.join(m.name for m in ranked)} need qrels, got qrels=None")
        from intdistill import _core

        qids, values, n_missing, n_ignored = _core.evaluate_dicts(qrels, run, _kinds(ranked))
        names = [m.name for m in ranked]
        mean.update(_means(values, names, "qrels has no query with a judgement"))
        per_query.update(_rows(qids, values, names))
    if answer:
        missing = [n for n, v in (("queries", queries), ("corpus", corpus)) if v is None]
        if missing:
            raise ValueError(
                f"measures {', '.join(m.name for m in answer)} need queries= (with answers) and corpus=; "
                f"missing: {', '.join(missing)}"
            )
        answers = importlib.import_module("intdistill.answers")
        acc = answers.accuracy_at_k(run, queries, corpus, sorted({m.k for m in answer}))
        if not acc:
            raise ValueError("nothing to average: accuracy_at_k scored no query (no query with answers?)")
        for m in answer:
            vals = [float(by_k[m.k]) for by_k in acc.values()]
            mean[m.name] = math.fsum(vals) / len(vals)
        for qid, by_k in acc.items():
            row = per_query.setdefault(qid, {})
            for m in answer:
                row[m.name] = float(by_k[m.k])
    order = [m.name for m in ms]
    return Evaluation(
        mean={n: mean[n] for n in order},
        per_query=per_query,
        n_queries=len(per_query),
        n_missing=n_missing,
        n_ignored=n_ignored,
    )


# ---------------------------------------------------------------------------------------------
# Prepared (CSR) form


@dataclass(frozen=True)
class Prepared:
    """Judged queries of a qrels and their results, as CSR arrays over order-preserving doc codes.

    Query ``i`` (``qids[i]``, qrels order, judged queries only) has judgements
    ``qrels_docs/qrels_rels[qrels_offsets[i]:qrels_offsets[i+1]]`` and results
    ``run_docs/run_scores[run_offsets[i]:run_offsets[i+1]]`` (empty when the run misses it).
    Doc codes are ranks of the doc id strings in sorted order, so code order is trec_eval's tie order.
    All arrays are int64 except ``run_scores`` (float64). Build with :func:`prepare` or
    :func:`prepare_topk`; evaluate with :func:`evaluate_prepared`.
    """

    qids: tuple[str, ...]
    qrels_offsets: np.ndarray  # (n_queries + 1,)
    qrels_docs: np.ndarray  # (n_judgements,)
    qrels_rels: np.ndarray  # (n_judgements,)
    run_offsets: np.ndarray  # (n_queries + 1,)
    run_docs: np.ndarray  # (n_results,)
    run_scores: np.ndarray  # (n_results,)
    n_missing: int
    n_ignored: int


def _offsets(lengths: Iterable[int], n: int) -> np.ndarray:
    off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.fromiter(lengths, dtype=np.int64, count=n), out=off[1:])
    return off


def _judged(qrels: Mapping) -> list[tuple[str, Mapping[str, int]]]:
    if not isinstance(qrels, Mapping):
        raise ValueError(f"qrels must be a dict {{qid: {{docid: rel}}}}, got {type(qrels).__name__}")
    return [(q, j) for q, j in qrels.items() if j]


def _qrels_arrays(judged, code: Mapping[str, int]):
    n = len(judged)
    offsets = _offsets((len(j) for _, j in judged), n)
    docs = np.fromiter((code[d] for _, j in judged for d in j), dtype=np.int64, count=int(offsets[-1]))
    for q, j in judged:
        for d, r in j.items():
            if isinstance(r, bool) or not isinstance(r, (int, np.integer)):
                raise ValueError(f"qrels[{q!r}][{d!r}]: relevance must be an integer, got {r!r}")
    rels = np.fromiter(chain.from_iterable(j.values() for _, j in judged), dtype=np.int64, count=int(offsets[-1]))
    return offsets, docs, rels


def _prepared(judged, qrels_csr, run_csr, *, n_missing: int, run_qids: Iterable[str]) -> Prepared:
    """A :class:`Prepared` from the CSR arrays of the judged queries (in ``judged`` order); run queries
    without judgements are counted as ignored."""
    judged_ids = {q for q, _ in judged}
    (q_off, q_docs, q_rels), (r_off, r_docs, r_scores) = qrels_csr, run_csr
    return Prepared(
        qids=tuple(q for q, _ in judged),
        qrels_offsets=q_off,
        qrels_docs=q_docs,
        qrels_rels=q_rels,
        run_offsets=r_off,
        run_docs=r_docs,
        run_scores=r_scores,
        n_missing=n_missing,
        n_ignored=sum(q not in judged_ids for q in run_qids),
    )


def prepare(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]) -> Prepared:
    """CSR form of ``qrels`` and ``run`` dicts (doc codes over the union of their doc ids).

    Slower than one :func:`evaluate` call on the same dicts, which needs no doc id interning: every
    result's doc id is hashed and looked up here. Use it to evaluate one pair many times or to get
    the arrays; runs that come out of an index are better built with :func:`prepare_topk`.
    """
    judged = _judged(qrels)
    if not isinstance(run, Mapping):
        raise ValueError(f"run must be a dict {{qid: {{docid: score}}}}, got {type(run).__name__}")
    results = [run.get(q) for q, _ in judged]
    vocab: set[str] = set()
    for _, j in judged:
        vocab.update(j)
    for r in results:
        if r:
            vocab.update(r)
    code = {d: i for i, d in enumerate(sorted(vocab))}
    q_off, q_docs, q_rels = _qrels_arrays(judged, code)
    from intdistill import _core

    r_off, r_docs, r_scores = _core.run_csr([q for q, _ in judged], run, code)
    return _prepared(judged, (q_off, q_docs, q_rels), (r_off, r_docs, r_scores),
                     n_missing=sum(r is None for r in results), run_qids=run)


def prepare_topk(
    qrels: Mapping[str, Mapping[str, int]],
    query_ids: Sequence[str],
    doc_ids: Sequence[str],
    indices: np.ndarray,
    scores: np.ndarray,
) -> Prepared:
    """CSR form of an index's top-k output, without building a run dict.

    ``indices`` (n_queries, k) are positions in ``doc_ids`` (the corpus ids), ``scores`` (n_queries, k)
    their scores; row ``i`` answers ``query_ids[i]``. Negative indices are padding (a search that
    found fewer than k) and are dropped; unsigned arrays are read as int64, so ``2**64 - 1`` padding
    becomes -1 too.
    """
    judged = _judged(qrels)
    idx = np.asarray(indices)
    if idx.dtype.kind == "u":
        idx = idx.astype(np.int64)  # wraps 2**64-1 to -1 (padding)
    elif idx.dtype.kind != "i":
        raise ValueError(f"indices must be an integer array, got dtype {idx.dtype}")
    sc = np.asarray(scores, dtype=np.float64)
    if idx.ndim != 2 or sc.shape != idx.shape:
        raise ValueError(f"indices and scores must both have shape (n_queries, k), got {idx.shape} and {sc.shape}")
    if len(query_ids) != idx.shape[0]:
        raise ValueError(f"query_ids has {len(query_ids)} ids but indices has {idx.shape[0]} rows")
    n_docs = len(doc_ids)
    if idx.size and idx.max() >= n_docs:
        raise ValueError(f"indices must be < len(doc_ids) = {n_docs}, got {int(idx.max())}")
    row_of = {q: i for i, q in enumerate(query_ids)}
    if len(row_of) != len(query_ids):
        raise ValueError(f"query_ids must be distinct, got {len(query_ids) - len(row_of)} repeated")
    vocab = set(doc_ids)
    if len(vocab) != n_docs:
        raise ValueError(f"doc_ids must be distinct, got {n_docs - len(vocab)} repeated")
    for _, j in judged:
        vocab.update(j)
    code = {d: i for i, d in enumerate(sorted(vocab))}
    doc_code = np.fromiter(map(code.__getitem__, doc_ids), dtype=np.int64, count=n_docs)
    q_off, q_docs, q_rels = _qrels_arrays(judged, code)
    rows = np.array([row_of.get(q, -1) for q, _ in judged], dtype=np.int64)
    n_missing = int((rows < 0).sum())
    if n_missing == 0 and (idx.size == 0 or idx.min() >= 0):  # no padding: every row is full
        k = idx.shape[1]
        r_off = np.arange(len(judged) + 1, dtype=np.int64) * k
        r_docs = doc_code[idx[rows].ravel()]
        r_scores = sc[rows].ravel()
    else:
        sel = idx[np.maximum(rows, 0)]  # (n_judged, k)
        valid = (sel >= 0) & (rows >= 0)[:, None]
        r_off = np.zeros(len(judged) + 1, dtype=np.int64)
        np.cumsum(valid.sum(axis=1), out=r_off[1:])
        r_docs = doc_code[sel[valid]]
        r_scores = np.ascontiguousarray(sc[np.maximum(rows, 0)][valid])
    return _prepared(judged, (q_off, q_docs, q_rels), (r_off, r_docs, r_scores),
                     n_missing=n_missing, run_qids=query_ids)


def evaluate_prepared(prepared: Prepared, measures: Union[str, Iterable[Union[str, Measure]]]) -> Evaluation:
    """:func:`evaluate` on a :class:`Prepared` (qrels measures only; same numbers, parallel, no GIL)."""
    from intdistill import _core

    ms = parse_measures(measures)
    answer = [m.name for m in ms if m.spec.kind == ANSWERS]
    if answer:
        raise ValueError(f"evaluate_prepared computes qrels measures only, got {', '.join(answer)}; use evaluate()")
    p = prepared
    values = _core.evaluate_csr(
        p.qrels_offsets, p.qrels_docs, p.qrels_rels, p.run_offsets, p.run_docs, p.run_scores, _kinds(ms)
    )
    names = [m.name for m in ms]
    return Evaluation(
        mean=_means(values, names, "no query with a judgement"),
        per_query=_rows(p.qids, values, names),
        n_queries=len(p.qids),
        n_missing=p.n_missing,
        n_ignored=p.n_ignored,
    )


# ---------------------------------------------------------------------------------------------
# ANN recall and rank correlation


def _int_matrix(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind == "u":
        a = a.astype(np.int64)  # 2**64-1 padding -> -1
    elif a.dtype.kind != "i":
        raise ValueError(f"{name} must be an integer array, got dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape (n_queries, k), got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.int64)


def ann_recall(approx, exact, k: int, *, per_query: bool = False):
    """ANN recall@k: mean over queries of ``|set(approx[q, :k]) ∩ set(exact[q, :k])| / k``.

    ``approx`` and ``exact``: integer id arrays of shape (n_queries, >= k) (an approximate index's
    results and the exact ones). Negative ids (and unsigned ``2**64 - 1``) are padding and never
    match. Returns a float, or the (n_queries,) array with ``per_query=True``.
    """
    from intdistill import _core

    a, e = _int_matrix(approx, "approx"), _int_matrix(exact, "exact")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got k={k!r}")
    values = _core.ann_recall(a, e, int(k))
    if per_query:
        return values
    if len(values) == 0:
        raise ValueError("approx and exact have no rows")
    return float(values.mean())


def kendall_tau(a, b):
    """Kendall's tau between two rankings of the same distinct items (ids, best first).

    1-D inputs give a float; 2-D inputs (n_pairs, n) a (n_pairs,) array, row by row. Rankings of
    distinct items have no ties, so tau-a = tau-b = (concordant - discordant) / (n (n - 1) / 2)
    (scipy.stats.kendalltau gives the same). Needs n >= 2; O(n log n).
    """
    from intdistill import _core

    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        raise ValueError(f"the two rankings must have the same shape, got {x.shape} and {y.shape}")
    single = x.ndim == 1
    x2, y2 = (x[None, :], y[None, :]) if single else (x, y)
    taus = _core.kendall_tau(_int_matrix(x2, "a"), _int_matrix(y2, "b"))
    return float(taus[0]) if single else taus


# Significance lives in intdistill.significance; these names stay importable from here.
from intdistill.significance import Comparison, PairedTest, compare, paired_test  # noqa: E402,F401
