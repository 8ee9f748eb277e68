"""LLM labels: the JSONL format and labelling candidate lists durably (the teacher gate's statistics on them
are in :mod:`intdistill.gate`).

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

import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

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
