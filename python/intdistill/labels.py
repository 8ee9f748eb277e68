"""LLM labels: the JSONL format, labelling candidate lists durably, and the teacher-quality report.

A label file has one JSON object per line, one line per query::

    {"qid": "q1", "cands": ["d3", "d9", ...],        # candidate ids in first-stage order
     "permutation": [1, 0, ...],                     # 0-based indices into cands, best first
     "outputs": ["[2] > [1] > ..."],                 # the LLM's raw text, one per call (always kept)
     "calls": [{"pass": 0, "start": 0, "shown": [...], "parsed": [...], "duplicates": 0, ...}],
     "repairs": {"duplicates": 0, "out_of_range": 0, "missing": 0, "unparseable": 0, "calls_repaired": 0},
     "model": "...", "template": "rankgpt", "prompt_hash": "...", "prompt_tokens": 812, "completion_tokens": 41}

Files made elsewhere in the shared format (``qid``, ``cands``, ``output`` with 1-based ids, ``model``, token
counts; see ../shared/data/scifact-llm-labels) load too: their ``output`` is parsed here, with repair counts.

Labelling appends one line per finished query and flushes it, and every LLM answer is in the durable cache
as soon as it arrives: an interrupted run loses at most the calls in flight, and a rerun resumes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from intdistill.data import DataError, Passage, Query, iter_jsonl

log = logging.getLogger(__name__)

REPAIR_KEYS = ("duplicates", "out_of_range", "missing", "unparseable", "calls_repaired")


@dataclass(frozen=True)
class Label:
    qid: str
    cands: tuple[str, ...]
    permutation: tuple[int, ...]
    outputs: tuple[str, ...]
    model: str
    template: str
    prompt_hash: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    repairs: Mapping[str, int] = field(default_factory=dict)
    calls: tuple[Mapping, ...] = ()
    pass_permutations: tuple[tuple[int, ...], ...] = ()

    @property
    def ranking(self) -> list[str]:
        """Candidate ids in the teacher's order."""
        return [self.cands[i] for i in self.permutation]

    @property
    def identity(self) -> bool:
        return list(self.permutation) == list(range(len(self.cands)))

    def to_json(self) -> dict:
        d = asdict(self)
        d["repairs"] = dict(self.repairs)
        return d


def passage_prompt_text(p: Passage) -> str:
    """How a passage is shown to the LLM: ``title. text`` (as the shared SciFact labels were made)."""
    return f"{p.title}. {p.text}" if p.title else p.text


# ---------------------------------------------------------------- reading / writing


def _label_from_obj(obj: dict, path, line: int) -> Label:
    for key in ("qid", "cands"):
        if key not in obj:
            raise DataError(path, line, f"expected a label object with field {key!r}, got fields {sorted(obj)}")
    qid, cands = str(obj["qid"]), obj["cands"]
    if not isinstance(cands, list) or not cands:
        raise DataError(path, line, f"expected 'cands' to be a non-empty list of ids, got {cands!r:.80}")
    cands = tuple(str(c) for c in cands)
    if len(set(cands)) != len(cands):
        raise DataError(path, line, f"duplicate candidate ids in 'cands' of query {qid!r}")
    n = len(cands)
    if "permutation" in obj:
        perm = obj["permutation"]
        if not isinstance(perm, list) or sorted(perm) != list(range(n)):
            raise DataError(path, line, f"expected 'permutation' to be a permutation of 0..{n - 1}, got {perm!r:.120}")
        return Label(
            qid=qid,
            cands=cands,
            permutation=tuple(perm),
            outputs=tuple(obj.get("outputs", ())),
            model=str(obj.get("model", "")),
            template=str(obj.get("template", "")),
            prompt_hash=str(obj.get("prompt_hash", "")),
            prompt_tokens=int(obj.get("prompt_tokens", 0)),
            completion_tokens=int(obj.get("completion_tokens", 0)),
            repairs=dict(obj.get("repairs", {})),
            calls=tuple(obj.get("calls", ())),
            pass_permutations=tuple(tuple(p) for p in obj.get("pass_permutations", ())),
        )
    if "output" in obj:  # the shared / imported format: raw text with 1-based ids
        from intdistill.llm import permutation as perm_mod
        from intdistill.llm import prompts

        if not isinstance(obj["output"], str):
            raise DataError(path, line, f"expected 'output' to be the LLM's text, got {type(obj['output']).__name__}")
        parsed = perm_mod.parse(obj["output"], n)
        tmpl = prompts.TEMPLATES.get("scifact-shared")
        repairs = {
            "duplicates": parsed.duplicates,
            "out_of_range": parsed.out_of_range,
            "missing": parsed.missing,
            "unparseable": int(parsed.unparseable),
            "calls_repaired": int(bool(parsed.duplicates or parsed.out_of_range or parsed.missing or parsed.unparseable)),
        }
        return Label(
            qid=qid,
            cands=cands,
            permutation=tuple(parsed.perm),
            outputs=(obj["output"],),
            model=str(obj.get("model", "")),
            template=str(obj.get("template", "imported")),
            prompt_hash=str(obj.get("prompt_hash", prompts.template_hash(tmpl) if tmpl else "")),
            prompt_tokens=int(obj.get("prompt_tokens", 0)),
            completion_tokens=int(obj.get("completion_tokens", 0)),
            repairs=repairs,
        )
    raise DataError(path, line, "expected a 'permutation' (intdistill labels) or an 'output' (raw LLM text) field")


def load_labels(path) -> dict[str, Label]:
    """Read a label file (intdistill's or the shared/imported format). Errors name the file and line."""
    path = Path(path)
    labels: dict[str, Label] = {}
    # a lone cut-off first line is an error: nothing in the file was ever complete
    for line_no, obj in iter_jsonl(path, appended=True, partial_first_line=False):
        label = _label_from_obj(obj, path, line_no)
        if label.qid in labels:
            raise DataError(path, line_no, f"duplicate label for query {label.qid!r}")
        labels[label.qid] = label
    return labels


# ---------------------------------------------------------------- labelling


@dataclass(frozen=True)
class LabelSummary:
    queries_total: int
    queries_done_before: int
    queries_labelled: int
    calls: int
    cache_hits: int
    calls_repaired: int
    duplicates: int
    out_of_range: int
    missing: int
    unparseable: int
    identity: int
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    failed: int = 0  # queries whose LLM calls still failed after every retry (listed in failed_path)
    failed_path: str = ""

    def lines(self) -> list[str]:
        n_calls = max(self.calls, 1)
        fails = ([f"FAILED: {self.failed} queries could not be labelled (their calls failed after every retry); "
                  f"they are listed in {self.failed_path}, and rerunning the same command retries only them"]
                 if self.failed else [])
        return [
            f"queries: {self.queries_labelled} labelled now, {self.queries_done_before} already done, "
            f"{self.failed} failed, {self.queries_total} in all",
            *fails,
            f"calls: {self.calls} ({self.cache_hits} from cache)",
            f"repairs: {self.calls_repaired}/{self.calls} calls repaired ({100 * self.calls_repaired / n_calls:.1f}%): "
            f"{self.duplicates} duplicate ids dropped, {self.out_of_range} invented ids dropped, "
            f"{self.missing} missing ids appended, {self.unparseable} unparseable answers",
            f"identity permutations: {self.identity}/{max(self.queries_labelled, 1)}",
            f"tokens: {self.prompt_tokens} in, {self.completion_tokens} out; {self.seconds:.1f} s "
            f"({self.seconds / max(self.queries_labelled, 1):.2f} s/query)",
        ]


def _label_of(qid, cands, result, client, cfg) -> Label:
    from intdistill.llm import prompts

    tmpl = prompts.TEMPLATES[cfg.template]
    calls = []
    rep = Counter()
    for c in result.calls:
        calls.append(
            {
                "pass": c.pass_index,
                "start": c.start,
                "shown": list(c.shown),
                "parsed": list(c.parsed),
                "duplicates": c.duplicates,
                "out_of_range": c.out_of_range,
                "missing": c.missing,
                "unparseable": c.unparseable,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "cached": c.cached,
                "latency_s": round(c.latency_s, 4),
            }
        )
        rep["duplicates"] += c.duplicates
        rep["out_of_range"] += c.out_of_range
        rep["missing"] += c.missing
        rep["unparseable"] += int(c.unparseable)
        rep["calls_repaired"] += int(c.repaired)
    return Label(
        qid=qid,
        cands=tuple(cands),
        permutation=tuple(result.permutation),
        outputs=tuple(c.output for c in result.calls),
        model=client.model,
        template=cfg.template,
        prompt_hash=prompts.template_hash(tmpl),
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        repairs={k: rep.get(k, 0) for k in REPAIR_KEYS},
        calls=tuple(calls),
        pass_permutations=tuple(result.pass_permutations) if len(result.pass_permutations) > 1 else (),
    )


def label_candidates(
    candidates: Mapping[str, Sequence[str]],
    queries: Mapping[str, Query],
    corpus: Mapping[str, Passage],
    client,
    out_path,
    cfg=None,
    *,
    progress: bool = True,
    passage_text: Callable[[Passage], str] = passage_prompt_text,
    max_consecutive_failures: int | None = None,
) -> LabelSummary:
    """Label every query's candidate list with the LLM and append the labels to ``out_path``.

    ``candidates``: qid -> candidate ids in first-stage order. Queries already in ``out_path`` are skipped
    (resume); their label file lines must come from the same model and template, else a DataError. Queries
    run side by side (``client.max_concurrency`` at a time) and each one's line is written and fsynced as it
    finishes, whatever the input order (:mod:`intdistill.journal`). A query whose calls fail after every
    retry is listed in ``<out>.failed.jsonl`` and the run goes on (:func:`intdistill.llm.items.run_items`:
    the circuit breaker stops it early with ``CircuitOpen`` when the endpoint looks down;
    ``max_consecutive_failures`` None = the default). Budget stops (``BudgetExceeded``) and Ctrl-C propagate
    after everything finished is saved.
    """
    from intdistill.journal import Journal
    from intdistill.llm import listwise, prompts
    from intdistill.llm.items import DEFAULT_MAX_CONSECUTIVE_FAILURES, run_items

    cfg = cfg or listwise.ListwiseConfig()
    out_path = Path(out_path)
    for qid, cands in candidates.items():
        if qid not in queries:
            raise DataError(None, None, f"candidates name query {qid!r}, which is not in the queries")
        missing = [c for c in cands if c not in corpus]
        if missing:
            raise DataError(None, None, f"candidates of query {qid!r} name {len(missing)} ids not in the corpus, e.g. {missing[0]!r}")
    want_hash = prompts.template_hash(prompts.TEMPLATES[cfg.template])

    def same_settings(done: Mapping[str, Label]) -> None:
        for lab in done.values():
            if (lab.model, lab.prompt_hash) != (client.model, want_hash):
                raise DataError(
                    out_path,
                    None,
                    f"existing labels come from model {lab.model!r} / prompt {lab.prompt_hash!r}, this run uses "
                    f"{client.model!r} / {want_hash!r}: write to another --out",
                )

    stats = Counter()
    t0 = time.perf_counter()
    with Journal(out_path, parse=_label_from_obj,
                 check=same_settings) as journal:
        done_before = sum(1 for q in candidates if q in journal.done)
        todo = [q for q in candidates if q not in journal.done]

        def work(q: str):
            return listwise.rank_one(client, q, queries[q].text, [passage_text(corpus[d]) for d in candidates[q]], cfg)

        def finished(q: str, res) -> None:
            lab = _label_of(q, candidates[q], res, client, cfg)
            journal.append(lab.to_json(), lab)
            stats["queries"] += 1
            stats["identity"] += int(lab.identity)
            stats["prompt_tokens"] += lab.prompt_tokens
            stats["completion_tokens"] += lab.completion_tokens
            for c in res.calls:
                stats["calls"] += 1
                stats["cache_hits"] += int(c.cached)
            for k in REPAIR_KEYS:
                stats[k] += lab.repairs.get(k, 0)

        run = run_items(
            todo, work, finished, on_fail=journal.fail,
            concurrency=int(getattr(client, "max_concurrency", 1) or 1),
            max_consecutive_failures=(DEFAULT_MAX_CONSECUTIVE_FAILURES if max_consecutive_failures is None
                                      else max_consecutive_failures),
            client=client if hasattr(client, "ledger") else None, progress=progress, desc="label",
            total=len(candidates), initial=done_before,
        )
        n_failed = sum(1 for q in candidates if q in journal.failures)
    return LabelSummary(
        queries_total=len(candidates),
        queries_done_before=done_before,
        queries_labelled=stats["queries"],
        calls=stats["calls"],
        cache_hits=stats["cache_hits"],
        calls_repaired=stats["calls_repaired"],
        duplicates=stats["duplicates"],
        out_of_range=stats["out_of_range"],
        missing=stats["missing"],
        unparseable=stats["unparseable"],
        identity=stats["identity"],
        prompt_tokens=stats["prompt_tokens"],
        completion_tokens=stats["completion_tokens"],
        seconds=time.perf_counter() - t0,
        failed=max(n_failed, len(run.failed)),
        failed_path=str(journal.failures.path),
    )


# ---------------------------------------------------------------- teacher-quality report


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

    @property
    def verdict(self) -> str:
        """"better" / "worse" (significant at 0.05 on the main measure) or "no significant difference"."""
        m = self.main_measure
        delta = self.teacher[m] - self.first_stage[m]
        if self.p_values[m] < 0.05:
            return "better" if delta > 0 else "worse"
        return "no significant difference"

    def lines(self) -> list[str]:
        out = [
            f"labels: {self.n_labels}; judged by {self.judged_by}: {self.n_judged} "
            f"({self.n_with_relevant} with a relevant candidate in the list)",
            f"{'measure':<12}{'first stage':>12}{self.subject:>10}{'delta':>9}{'p':>8}",
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
            out.append(f"identity permutations: {100 * self.identity_rate:.1f}% (the first-stage order kept)")
        out.append(f"verdict: the {self.subject} is {self.verdict} than the first stage on {self.main_measure}"
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
    from intdistill.evaluate import evaluate, kendall_tau, paired_test

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
