"""The teacher gate's statistics: does an order (an LLM's labels, or a trained ranker's) beat the first stage's?

:func:`teacher_report` compares the teacher's order with the first stage's inside the same candidate lists,
judged by qrels or by answer strings, with a paired randomization test per measure; :class:`TeacherReport`
holds the result, and its verdict is :func:`intdistill.significance.verdict` (the one rule). The teacher gate
runs it on LLM labels; the ranker check runs it on a trained ranker's order of held-out lists
(:func:`ranker_labels` turns that order into label records). :func:`plot_positions` draws where the teacher
puts each first-stage position.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

from intdistill.data import DataError, Passage, Query
from intdistill.labels import REPAIR_KEYS, Label
from intdistill.significance import paired_test, verdict


@dataclass(frozen=True)
class TeacherReport:
    """The teacher's order vs the first stage's order inside the same candidate lists."""

    judged_by: str  # "qrels" or "answers"
    n_labels: int
    n_judged: int  # labelled queries with judgements (qrels entry, or answers)
    n_with_relevant: int  # of those, lists holding at least one relevant candidate
    teacher: Mapping[str, float]
    first_stage: Mapping[str, float]
    p_values: Mapping[str, float]  # paired randomisation test, teacher vs first stage
    identity_rate: float
    repair_rate: float  # share of calls whose answer needed any repair
    repairs: Mapping[str, int]
    position_counts: tuple[tuple[int, ...], ...]  # [first-stage position][teacher rank] -> count
    main_measure: str
    # mean Kendall tau between the passes of each multi-pass label (--passes N, best with --shuffle):
    # 1 = the teacher gives the same order whatever the presentation order; None = single-pass labels
    pass_agreement: float | None = None
    n_multi_pass: int = 0
    subject: str = "teacher"  # whose order is compared: "teacher" (an LLM's labels) or "ranker" (a trained ranker)
    baseline: str = "first stage"  # the order it is compared with (the lists' own order)

    @property
    def verdict(self) -> str:
        """:func:`intdistill.significance.verdict` on the main measure: "better", "worse" or "no significant
        difference"."""
        m = self.main_measure
        return verdict(self.teacher[m] - self.first_stage[m], self.p_values[m])

    def lines(self) -> list[str]:
        out = [
            f"labels: {self.n_labels}; judged by {self.judged_by}: {self.n_judged} "
            f"({self.n_with_relevant} with a relevant candidate in the list)",
            f"{'measure':<12}{self.baseline:>12}{self.subject:>10}{'delta':>9}{'p':>8}",
        ]
        for m in self.teacher:
            d = self.teacher[m] - self.first_stage[m]
            out.append(f"{m:<12}{self.first_stage[m]:>12.4f}{self.teacher[m]:>10.4f}{d:>+9.4f}{self.p_values[m]:>8.4f}")
        if self.pass_agreement is not None:
            out.append(f"agreement between passes: mean Kendall tau {self.pass_agreement:.3f} over "
                       f"{self.n_multi_pass} multi-pass lists (1 = no sensitivity to presentation order)")
        if self.subject == "teacher":
            out.append(f"identity permutations: {100 * self.identity_rate:.1f}%; calls repaired: "
                       f"{100 * self.repair_rate:.1f}% ({', '.join(f'{k} {v}' for k, v in self.repairs.items())})")
        else:  # no LLM calls behind a ranker's order: nothing was repaired
            out.append(f"identity permutations: {100 * self.identity_rate:.1f}% (the {self.baseline}'s order kept)")
        out.append(f"verdict: the {self.subject} is {self.verdict} than the {self.baseline} on {self.main_measure}"
                   if self.verdict != "no significant difference"
                   else f"verdict: no significant difference on {self.main_measure} (p={self.p_values[self.main_measure]:.3f})")
        return out

    def to_json(self) -> dict:
        d = asdict(self)
        d["verdict"] = self.verdict
        return d


def answer_qrels(labels: Mapping[str, Label], queries: Mapping[str, Query], corpus: Mapping[str, Passage]) -> dict:
    """Pseudo-qrels from answer strings: a candidate is relevant when it contains an answer (DPR has-answer)."""
    from intdistill import _core

    qids = [q for q in labels if q in queries and queries[q].answers]
    hits = _core.has_answer(
        [[corpus[d].text for d in labels[q].cands] for q in qids], [list(queries[q].answers) for q in qids]
    )
    return {q: {d: int(h) for d, h in zip(labels[q].cands, hs)} for q, hs in zip(qids, hits)}


def teacher_report(
    labels: Mapping[str, Label],
    *,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    queries: Mapping[str, Query] | None = None,
    corpus: Mapping[str, Passage] | None = None,
    k: int = 10,
    n_resamples: int = 10000,
    subject: str = "teacher",
) -> TeacherReport:
    """Compare the teacher's order with the first stage's on the labelled queries that have judgements.

    With ``qrels``: nDCG@k, RR@k and Success@1 (ideal from the full qrels, so the numbers equal those of the
    reranked run). With answers (``queries`` having answers, plus ``corpus``): candidates that contain an
    answer count as relevant, and the measures are nDCG@k, RR@k and Acc@1. Paired randomisation test per measure.
    """
    from intdistill.metrics import evaluate, kendall_tau

    if not labels:
        raise ValueError("no labels to report on")
    if qrels is not None:
        judged_by, rel = "qrels", {q: qrels[q] for q in labels if q in qrels}
        measures = [f"nDCG@{k}", f"RR@{k}", "Success@1"]
    elif queries is not None and corpus is not None:
        judged_by, rel = "answers", answer_qrels(labels, queries, corpus)
        measures = [f"nDCG@{k}", f"RR@{k}", "Success@1"]
    else:
        raise ValueError("teacher_report needs qrels, or queries with answers and the corpus")
    if not rel:
        raise ValueError(f"none of the {len(labels)} labelled queries has {judged_by}")
    fs_run, t_run = {}, {}
    for q in rel:
        lab = labels[q]
        n = len(lab.cands)
        fs_run[q] = {d: float(n - r) for r, d in enumerate(lab.cands)}
        t_run[q] = {d: float(n - r) for r, d in enumerate(lab.ranking)}
    fs = evaluate(rel, fs_run, measures)
    te = evaluate(rel, t_run, measures)
    names = {m: m for m in measures}
    if judged_by == "answers":
        names["Success@1"] = "Acc@1"
    p_values = {
        names[m]: paired_test(
            {q: v[m] for q, v in te.per_query.items()}, {q: v[m] for q, v in fs.per_query.items()},
            n_resamples=n_resamples,
        ).p_value
        for m in measures
    }
    n_max = max(len(l.cands) for l in labels.values())
    counts = [[0] * n_max for _ in range(n_max)]
    for lab in labels.values():
        for rank, idx in enumerate(lab.permutation):
            counts[idx][rank] += 1
    n_calls = sum(max(len(l.outputs), 1) for l in labels.values())
    repairs = Counter()
    for lab in labels.values():
        repairs.update({k2: int(v) for k2, v in lab.repairs.items()})
    taus, n_multi = [], 0
    for lab in labels.values():
        passes = lab.pass_permutations
        if len(passes) >= 2 and len(lab.cands) >= 2:
            n_multi += 1
            taus += [kendall_tau(a, b) for i, a in enumerate(passes) for b in passes[i + 1 :]]
    return TeacherReport(
        judged_by=judged_by,
        n_labels=len(labels),
        n_judged=len(rel),
        n_with_relevant=sum(1 for q in rel if any(rel[q].get(d, 0) > 0 for d in labels[q].cands)),
        teacher={names[m]: te.mean[m] for m in measures},
        first_stage={names[m]: fs.mean[m] for m in measures},
        p_values=p_values,
        identity_rate=sum(l.identity for l in labels.values()) / len(labels),
        repair_rate=repairs.get("calls_repaired", 0) / max(n_calls, 1),
        repairs={k2: repairs.get(k2, 0) for k2 in REPAIR_KEYS if k2 != "calls_repaired"},
        position_counts=tuple(tuple(r) for r in counts),
        main_measure=f"nDCG@{k}",
        pass_agreement=sum(taus) / len(taus) if taus else None,
        n_multi_pass=n_multi,
        subject=subject,
    )


def ranker_labels(
    ranker,
    lists: Mapping[str, tuple[str, Sequence[str]]],
    corpus: Mapping[str, Passage],
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> dict[str, Label]:
    """A trained cross-encoder's order of each candidate list, as :class:`Label` records, so that
    :func:`teacher_report` (``subject="ranker"``) can judge it against the first stage's order the way the
    gate judges an LLM's. ``lists``: ``qid -> (query text, candidate ids in first-stage order)``. The ranker
    sees ``passage.full_text()`` (as in training); candidates it scores equally keep their first-stage order."""
    import numpy as np

    for q, (text, cands) in lists.items():
        if not text or not text.strip():
            raise DataError(None, None, f"query {q!r}: expected a query text, got {text!r}")
        missing = [d for d in cands if d not in corpus]
        if missing:
            raise DataError(None, None, f"query {q!r} names candidate {missing[0]!r}, not in the corpus")
    from intdistill.train.ranker import score_lists

    scores = score_lists(ranker, lists, corpus, batch_size=batch_size, progress=progress)
    out = {}
    for q, (_, cands) in lists.items():
        perm = tuple(int(j) for j in np.argsort(-np.asarray(scores[q], dtype=np.float64), kind="stable"))
        out[q] = Label(qid=q, cands=tuple(cands), permutation=perm, outputs=(), model=getattr(ranker, "name", ""),
                       template="ranker", prompt_hash="")
    return out


def plot_positions(report: TeacherReport, path, title: str = "") -> Path:
    """PNG: where the teacher puts each first-stage position (row-normalised heatmap + mean teacher rank)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # optional dependency
        raise ImportError("plots need matplotlib: pip install 'intdistill[plot]'") from e
    import numpy as np

    counts = np.array(report.position_counts, dtype=float)
    n = counts.shape[0]
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    mean_rank = (counts * np.arange(1, n + 1)[None, :]).sum(axis=1) / np.maximum(counts.sum(axis=1), 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    im = ax1.imshow(share, cmap="viridis", vmin=0, vmax=max(share.max(), 1e-9))
    ax1.set_xlabel(f"{report.subject} rank")
    ax1.set_ylabel("first-stage position")
    ax1.set_xticks(range(n), [str(i + 1) for i in range(n)])
    ax1.set_yticks(range(n), [str(i + 1) for i in range(n)])
    ax1.set_title("share of lists (row-normalised)")
    fig.colorbar(im, ax=ax1, fraction=0.046)
    ax2.bar(range(1, n + 1), mean_rank, color="tab:blue", label=report.subject)
    ax2.plot(range(1, n + 1), range(1, n + 1), "k--", label="unchanged")
    ax2.set_xlabel("first-stage position")
    ax2.set_ylabel(f"mean {report.subject} rank")
    ax2.set_title(f"identity {100 * report.identity_rate:.0f}%, verdict: {report.verdict}")
    ax2.legend()
    fig.suptitle(title or f"{report.subject} vs first stage ({report.n_judged} judged lists)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
