"""Answer-string metrics: SQuAD v1.1 EM / F1 for a reader, DPR top-k accuracy for a retriever.

A thin layer over ``intdistill._core`` (``rust/src/answers.rs``), which reproduces the originals
character for character, Unicode included:

- ``normalize_answer``: the official SQuAD v1.1 normalisation
  ``white_space_fix(remove_articles(remove_punc(lower(s))))``.
- ``exact_match`` / ``f1``: ``max_g [norm(pred) == norm(g)]`` and ``max_g 2PR / (P + R)`` over
  the whitespace tokens of the normalised strings (multiset overlap; 0 when nothing is shared).
  Values are fractions in [0, 1]; the official script reports the means ×100.
- ``accuracy_at_k``: DPR's "top-k accuracy": a retrieved passage has the answer when, after NFD
  and DPR's ``SimpleTokenizer`` (uncased), some answer's tokens occur contiguously in the
  passage's tokens. As in DPR, only ``Passage.text`` is searched, not the title.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from intdistill import _core
from intdistill.data import Passage, Query, Run

__all__ = [
    "SquadScores",
    "accuracy_at_k",
    "exact_match",
    "f1",
    "mean_accuracy",
    "normalize_answer",
    "squad_scores",
]


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation: lower-case, drop ASCII punctuation (``string.punctuation``),
    drop the articles ``a``/``an``/``the`` as whole words, collapse whitespace."""
    return _core.normalize_answer(s)


def _gold_list(golds: Iterable[str], what: str) -> list[str]:
    if isinstance(golds, str):
        raise ValueError(f"{what}: expected a sequence of gold answers, got the string {golds!r}")
    golds = list(golds)
    if not golds:
        raise ValueError(f"{what}: expected at least one gold answer, got none")
    return golds


def exact_match(pred: str, golds: Iterable[str]) -> float:
    """SQuAD exact match of one prediction: 1.0 if it equals any gold answer after
    normalisation, else 0.0."""
    em, _ = _core.squad_em_f1([pred], [_gold_list(golds, "exact_match")])
    return float(em[0])


def f1(pred: str, golds: Iterable[str]) -> float:
    """SQuAD token F1 of one prediction, the maximum over ``golds``, in [0, 1]."""
    _, f = _core.squad_em_f1([pred], [_gold_list(golds, "f1")])
    return float(f[0])


@dataclass(frozen=True)
class SquadScores:
    """SQuAD v1.1 scores of a set of predictions. All values are fractions in [0, 1]
    (the official script prints ``100 * em`` and ``100 * f1``).

    ``qids[i]`` is scored ``em_per_query[i]`` and ``f1_per_query[i]`` (read-only float64
    arrays, in the order of ``queries``); ``em`` and ``f1`` are their means over ``n`` queries.
    """

    em: float
    f1: float
    n: int
    qids: tuple[str, ...]
    em_per_query: np.ndarray
    f1_per_query: np.ndarray


def _answers_of(q: Query, qid: str) -> list[str]:
    if not q.answers:
        raise ValueError(f"query {qid!r} has no answers: expected at least one answer string")
    return list(q.answers)


def squad_scores(preds: Mapping[str, str], queries: Mapping[str, Query]) -> SquadScores:
    """Score ``preds`` ``{qid: predicted answer}`` against ``queries[qid].answers``.

    Every query in ``queries`` is scored and must have a prediction (pass ``""`` to score an
    unanswered question 0, as the official script does) and at least one answer; a prediction for
    an unknown qid is an error too. Raises ``ValueError`` naming the offending qids.
    """
    missing = [q for q in queries if q not in preds]
    if missing:
        raise ValueError(
            f"expected a prediction for every query; {len(missing)} missing, e.g. {missing[:5]}"
        )
    unknown = [q for q in preds if q not in queries]
    if unknown:
        raise ValueError(
            f"predictions for {len(unknown)} qids not in queries, e.g. {unknown[:5]}"
        )
    if not queries:
        raise ValueError("expected at least one query, got none")
    qids = tuple(queries)
    golds = [_answers_of(queries[q], q) for q in qids]
    em, f = _core.squad_em_f1([preds[q] for q in qids], golds)
    em.flags.writeable = False
    f.flags.writeable = False
    return SquadScores(
        em=float(em.mean()),
        f1=float(f.mean()),
        n=len(qids),
        qids=qids,
        em_per_query=em,
        f1_per_query=f,
    )


def accuracy_at_k(
    run: Mapping[str, Mapping[str, float]],
    queries: Mapping[str, Query],
    corpus: Mapping[str, Passage],
    ks: Sequence[int],
) -> dict[str, dict[int, float]]:
    """Per-query DPR top-k accuracy: ``out[qid][k]`` is 1.0 if any of the query's ``k``
    best-ranked passages contains one of its answers (see the module docstring), else 0.0.

    ``run`` is ``{qid: {docid: score}}``, ranked by score descending, ties by docid descending
    (``Run.ranked``, as trec_eval). Every query in ``queries`` is scored; one absent from the run
    retrieved nothing and scores 0.0 at every k (DPR divides by all questions). Raises
    ``ValueError`` for a query without answers, a run qid not in ``queries``, a run docid not in
    ``corpus``, or a k that is not a positive int. Means: ``mean_accuracy``.
    """
    ks = list(ks)
    bad_ks = [k for k in ks if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1]
    if not ks or bad_ks:
        raise ValueError(f"expected a non-empty list of positive int ks, got {ks!r}")
    unknown_q = [q for q in run if q not in queries]
    if unknown_q:
        raise ValueError(f"run has {len(unknown_q)} qids not in queries, e.g. {unknown_q[:5]}")
    ranked = run.ranked if isinstance(run, Run) else Run(run).ranked
    depth = max(ks)
    qids = list(queries)
    answers = [_answers_of(queries[q], q) for q in qids]
    unknown_d = sorted({d for docs in run.values() for d in docs if d not in corpus})
    if unknown_d:
        raise ValueError(
            f"run has {len(unknown_d)} docids not in the corpus, e.g. {unknown_d[:5]}"
        )
    tops = [ranked(q)[:depth] for q in qids]
    hits = _core.has_answer([[corpus[d].text for d in top] for top in tops], answers)
    out: dict[str, dict[int, float]] = {}
    for qid, h in zip(qids, hits):
        # first[i]: rank (1-based) of the first passage with an answer; inf when none.
        first = next((i + 1 for i, x in enumerate(h) if x), float("inf"))
        out[qid] = {int(k): 1.0 if first <= k else 0.0 for k in ks}
    return out


def mean_accuracy(per_query: Mapping[str, Mapping[int, float]]) -> dict[int, float]:
    """Mean over queries of ``accuracy_at_k``'s output: ``{k: Acc@k in [0, 1]}``."""
    if not per_query:
        raise ValueError("expected per-query accuracies for at least one query, got none")
    ks = next(iter(per_query.values())).keys()
    return {k: float(np.mean([v[k] for v in per_query.values()])) for k in ks}
