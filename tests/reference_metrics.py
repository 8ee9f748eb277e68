"""Pure-Python references for ``rust/src/metrics.rs`` (slow, obvious, trec_eval's conventions).

- Ranking: scores rounded to float32 (trec_eval keeps ``float sim``), sorted descending; equal
  scores ordered by doc id descending (``strcmp``; Python ``str`` order is the same).
- Relevant: ``rel >= 1``; gain ``rel``; ``R`` = number of relevant judged docs.
"""

from __future__ import annotations

import math

import numpy as np


def ranking(results: dict[str, float]) -> list[str]:
    """Doc ids best first, as trec_eval orders them."""
    return [d for d, _ in sorted(results.items(), key=lambda kv: (float(np.float32(kv[1])), kv[0]), reverse=True)]


def measure(kind: str, k: int, judged: dict[str, int], results: dict[str, float]) -> float:
    """One measure of one query (``kind`` as in ``_core.METRIC_KINDS``)."""
    ranked = ranking(results)[:k]
    rels = [judged.get(d, 0) for d in ranked]
    n_rel = sum(1 for r in judged.values() if r >= 1)
    hits = [r >= 1 for r in rels]
    if kind == "ndcg":
        dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rels) if r >= 1)
        ideal = sorted((r for r in judged.values() if r >= 1), reverse=True)[:k]
        idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
        return dcg / idcg if idcg > 0 else 0.0
    if kind == "recall":
        return sum(hits) / n_rel if n_rel else 0.0
    if kind == "precision":
        return sum(hits) / k
    if kind == "rr":
        return next((1.0 / (i + 1) for i, h in enumerate(hits) if h), 0.0)
    if kind == "ap":
        if not n_rel:
            return 0.0
        total, found = 0.0, 0
        for i, h in enumerate(hits):
            if h:
                found += 1
                total += found / (i + 1)
        return total / n_rel
    if kind == "success":
        return 1.0 if any(hits) else 0.0
    raise ValueError(f"unknown kind {kind!r}")


def evaluate(qrels: dict, run: dict, measures: list[tuple[str, int]]) -> dict[str, list[float]]:
    """``{qid: [value per measure]}`` for every query of ``qrels`` with a judgement (missing runs score 0)."""
    return {
        qid: [measure(kind, k, judged, run.get(qid, {})) for kind, k in measures]
        for qid, judged in qrels.items()
        if judged
    }


def ann_recall(approx, exact, k: int) -> list[float]:
    """Per row ``|set(approx[:k]) & set(exact[:k])| / k``; negative ids are padding."""
    out = []
    for a, e in zip(approx, exact):
        sa = {int(x) for x in a[:k] if x >= 0}
        se = {int(x) for x in e[:k] if x >= 0}
        out.append(len(sa & se) / k)
    return out


def kendall_tau(a, b) -> float:
    """Tau-a by the O(n^2) definition: (concordant - discordant) / (n (n - 1) / 2)."""
    pos_b = {x: i for i, x in enumerate(b)}
    n = len(a)
    s = 0
    for i in range(n):
        for j in range(i + 1, n):
            # a ranks a[i] above a[j]; concordant if b does too
            s += 1 if pos_b[a[i]] < pos_b[a[j]] else -1
    return s / (n * (n - 1) / 2)
