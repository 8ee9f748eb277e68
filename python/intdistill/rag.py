"""Retrieval-augmented QA: retrieve k passages, let an LLM reader write a short answer, score it.

    retrieve = IndexRetrieve(index, retriever)              # or any callable (texts, k) -> Hits
    res = answer_questions(retrieve, queries, corpus, client, k=5, out="preds.jsonl")
    print(res.em, res.f1, res.accuracy, res.ledger)          # SQuAD EM / F1, Acc@k of the retrieved passages
    a = ask("Who wrote Hamlet?", retrieve, corpus, client, k=3)
    print(a.answer, [s.docid for s in a.sources])

The reader (its prompts, :class:`ReaderConfig`, ``parse_answer``) is :mod:`intdistill.reader`; the raw text
is always kept next to the parsed prediction. The predictions file's records are :mod:`intdistill.predictions`.

Scores (``intdistill.answers``; fractions in [0, 1]):
- ``em`` / ``f1``: SQuAD v1.1 exact match and token F1 of the prediction against the gold answers (max over them);
- ``accuracy`` (Acc@k): DPR top-k accuracy of the retrieved passages: 1 when one of the k passages contains a
  gold answer (DPR has-answer over ``Passage.text``), per record ``hit_rank`` = the 1-based rank of the first one.
Questions without gold answers are answered but not scored (``n_unscored``); the means are over the scored
ones (``None`` when there are none). Scores are recomputed from the current gold answers and corpus on every
call, for the records read back from ``out`` too.

Predictions file (``out``, JSONL, one line per question, the fields of ``RagRecord``): a line is appended,
flushed and fsynced as soon as its question is answered, and every LLM answer is in the client's cache as it
arrives, so an interrupted run loses at most the calls in flight. A rerun skips the questions already in the
file (resume). A file made with another model, reader prompt, k, reader setting or retriever
(``RUN_IDENTITY``) is refused with a ``DataError`` naming the file; a cut-off last line (a crash mid-write)
is dropped and its question answered again.

Budget: when the client's ``max_calls`` / ``max_cost`` is reached (``BudgetExceeded``), every answer obtained
is written and ``answer_questions`` returns with ``stopped`` set to the reason (a rerun goes on).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from intdistill.data import DataError, Passage, Query

log = logging.getLogger(__name__)

__all__ = [
    "READER_TEMPLATES",
    "RUN_IDENTITY",
    "Answer",
    "IndexRetrieve",
    "RagRecord",
    "RagResult",
    "ReaderConfig",
    "Source",
    "answer_questions",
    "ask",
    "get_reader_template",
    "load_predictions",
    "parse_answer",
    "passage_reader_text",
    "reader_messages",
]

from intdistill.reader import (READER_TEMPLATES, ReaderConfig, get_reader_template, parse_answer,  # noqa: E402,F401
                               passage_reader_text, reader_messages)


# ---------------------------------------------------------------------------------------------- retrieval


class IndexRetrieve:
    """``(texts, k) -> Hits`` over a ``DenseIndex`` with the retriever that built it.

    The retriever is checked against the index once, here (``DenseIndex.check_retriever``: another dimension is
    a ``ValueError``, another fingerprint a ``RetrieverMismatchError`` unless ``allow_mismatch``).
    ``retrieval_id`` (the retriever's fingerprint) goes into every prediction line.
    """

    def __init__(self, index, retriever, *, allow_mismatch: bool = False, batch_size: int = 64, exact: bool = False):
        index.check_retriever(retriever, allow_mismatch=allow_mismatch)
        self.index, self.retriever, self.batch_size, self.exact = index, retriever, batch_size, exact
        self.retrieval_id = retriever.fingerprint()

    def __call__(self, texts: Sequence[str], k: int):
        q = self.retriever.encode_queries(list(texts), batch_size=self.batch_size, progress=False)
        return self.index.search_exact(q, k) if self.exact else self.index.search(q, k)


class HybridRetrieve:
    """A retrieve with BM25 at query time: ``inner``'s top ``pool`` of each question re-scored by
    :func:`intdistill.candidates.lexical_rescore` (``20 · score + weight · bm25 / max_q``; the statistics are
    ``bm25``, else fitted on ``corpus`` once, here) and cut to ``k``. ``limit``: the most ``inner`` can return
    (the index's size). ``retrieval_id`` is ``inner``'s with the weight and pool added, so predictions made
    with and without BM25 are told apart."""

    def __init__(self, inner: "Retrieve", corpus: Mapping[str, Passage], weight: float, *, pool: int = 100,
                 limit: int | None = None, bm25=None):
        from intdistill.candidates import corpus_bm25
        from intdistill.lexical import check_weight

        if not callable(inner):
            raise TypeError(f"inner: expected a callable (texts, k) -> Hits, got {type(inner).__name__}")
        self.weight = check_weight(weight, "lexical weight")
        if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
            raise ValueError(f"pool: expected an int >= 1, got {pool!r}")
        self.inner, self.corpus, self.pool, self.limit = inner, corpus, pool, limit
        self.bm25 = bm25 if bm25 is not None else corpus_bm25(corpus)
        inner_id = str(getattr(inner, "retrieval_id", "") or "")
        self.retrieval_id = f"{inner_id}+bm25x{self.weight:g}/{pool}"

    def pool_for(self, k: int) -> int:
        """The passages ``inner`` is asked for to keep the best ``k``."""
        from intdistill.candidates import rescore_pool

        return rescore_pool(k, self.pool, self.limit)

    def __call__(self, texts: Sequence[str], k: int):
        from intdistill.candidates import CandidateList, Candidates, lexical_rescore
        from intdistill.index import Hits

        hits = self.inner(list(texts), self.pool_for(k))
        lists = Candidates({str(i): CandidateList(tuple(d), tuple(float(x) for x in row), t)
                            for i, (d, row, t) in enumerate(zip(hits.docids, hits.scores, texts))})
        fused = lexical_rescore(lists, self.corpus, self.weight, k, bm25=self.bm25)
        rows = [fused[str(i)] for i in range(len(texts))]
        return Hits([list(r.docids) for r in rows], np.array([r.scores for r in rows], dtype=np.float32))


Retrieve = Callable[[Sequence[str], int], object]  # returns Hits-like: .docids (nq lists), .scores (nq, k)


def _as_retrieve(retrieve, retriever, allow_mismatch: bool) -> tuple[Retrieve, str]:
    from intdistill.index import DenseIndex

    if isinstance(retrieve, DenseIndex):
        if retriever is None:
            raise ValueError("retrieve is a DenseIndex: pass retriever= (the model that encodes the questions)")
        retrieve = IndexRetrieve(retrieve, retriever, allow_mismatch=allow_mismatch)
    elif retriever is not None:
        raise ValueError("retriever= goes with a DenseIndex; got a retrieve callable as well")
    if not callable(retrieve):
        raise TypeError(f"retrieve: expected a DenseIndex or a callable (texts, k) -> Hits, got {type(retrieve).__name__}")
    return retrieve, str(getattr(retrieve, "retrieval_id", "") or "")


def _retrieved(retrieve: Retrieve, qids: Sequence[str], texts: Sequence[str], k: int,
               corpus: Mapping[str, Passage]) -> list[tuple[tuple[str, ...], tuple[float, ...]]]:
    """``[(docids, scores)]`` per question, best first; ids must be corpus ids."""
    hits = retrieve(texts, k)
    docids, scores = list(hits.docids), [list(map(float, row)) for row in hits.scores]
    if len(docids) != len(texts) or len(scores) != len(texts):
        raise ValueError(f"retrieve: expected results for {len(texts)} questions, got {len(docids)} id lists "
                         f"and {len(scores)} score lists")
    out = []
    for qid, ids, sc in zip(qids, docids, scores):
        ids = tuple(str(d) for d in ids)
        if not ids or len(ids) > k or len(sc) != len(ids):
            raise ValueError(f"retrieve: expected 1 to {k} passages with one score each for question {qid!r}, "
                             f"got {len(ids)} ids and {len(sc)} scores")
        unknown = [d for d in ids if d not in corpus]
        if unknown:
            raise DataError(getattr(corpus, "source", None), None,
                            f"retrieved passage {unknown[0]!r} (question {qid!r}) is not in the corpus: expected "
                            "the corpus the index was built from")
        out.append((ids, tuple(sc)))
    return out


from intdistill.predictions import (RUN_IDENTITY, RagRecord, _check_identity, _record_from_obj,  # noqa: E402,F401
                                   load_predictions)


def _scored(records: Sequence[RagRecord], queries: Mapping[str, Query], corpus: Mapping[str, Passage]) -> list[RagRecord]:
    """``records`` with ``answers``, ``em``, ``f1`` and ``hit_rank`` from the current gold answers and corpus."""
    from dataclasses import replace

    from intdistill import _core
    from intdistill.answers import squad_scores

    gold = [r for r in records if queries[r.qid].answers]
    by_qid: dict[str, dict] = {r.qid: dict(answers=(), em=None, f1=None, hit_rank=None) for r in records}
    if gold:
        subset = {r.qid: queries[r.qid] for r in gold}
        sq = squad_scores({r.qid: r.prediction for r in gold}, subset)
        unknown = [d for r in gold for d in r.docids if d not in corpus]
        if unknown:
            raise DataError(getattr(corpus, "source", None), None,
                            f"a retrieved passage, {unknown[0]!r}, is not in the corpus: expected the corpus the "
                            "predictions were made with")
        hits = _core.has_answer([[corpus[d].text for d in r.docids] for r in gold],
                                [list(queries[r.qid].answers) for r in gold])
        for r, em, f, h in zip(gold, sq.em_per_query.tolist(), sq.f1_per_query.tolist(), hits):
            first = next((i + 1 for i, x in enumerate(h) if x), None)
            by_qid[r.qid] = dict(answers=tuple(queries[r.qid].answers), em=float(em), f1=float(f), hit_rank=first)
    return [replace(r, **by_qid[r.qid]) for r in records]


def measures_of(records: Sequence[RagRecord], k: int) -> dict[str, float | None]:
    """EM, F1 and Acc@k (a gold answer in one of the k retrieved passages) of ``records``: means over the scored
    ones, None when none is scored."""
    scored = [r for r in records if r.scored]
    if not scored:
        return {"EM": None, "F1": None, f"Acc@{k}": None}
    n = len(scored)
    return {"EM": sum(r.em for r in scored) / n, "F1": sum(r.f1 for r in scored) / n,
            f"Acc@{k}": sum(r.hit_rank is not None for r in scored) / n}


@dataclass(frozen=True)
class RagResult:
    """What ``answer_questions`` did. ``records``: every given question that has a prediction (this run's
    and those read back from ``out``), in the order of ``queries``, scored against the current gold answers.
    Means are over the scored records (``None`` when none is scored)."""

    records: tuple[RagRecord, ...]
    n_questions: int  # questions given
    n_done_before: int  # of those, already in `out` when the run started
    n_answered_now: int
    k: int
    model: str
    ledger: object  # intdistill.llm.cache.Ledger of this run's client
    stopped: str | None = None  # the budget stop's reason, when the run stopped early
    out: str | None = None
    seconds: float = 0.0
    failed: int = 0  # questions whose reader call failed after every retry (listed in failed_path)
    failed_path: str | None = None

    @property
    def predictions(self) -> dict[str, str]:
        return {r.qid: r.prediction for r in self.records}

    @property
    def n_scored(self) -> int:
        return sum(r.scored for r in self.records)

    @property
    def n_unscored(self) -> int:
        """Answered questions without gold answers."""
        return len(self.records) - self.n_scored

    @property
    def em(self) -> float | None:
        return self.measures()["EM"]

    @property
    def f1(self) -> float | None:
        return self.measures()["F1"]

    @property
    def accuracy(self) -> float | None:
        """Acc@k: share of scored questions with a gold answer in one of their k retrieved passages."""
        return self.measures()[f"Acc@{self.k}"]

    def measures(self) -> dict[str, float | None]:
        return measures_of(self.records, self.k)

    def lines(self) -> list[str]:
        """Diagnostics (for stderr)."""
        out = [f"questions: {len(self.records)} of {self.n_questions} answered ({self.n_answered_now} now, "
               f"{self.n_done_before} already in {self.out or 'the file'}); {self.n_scored} scored, "
               f"{self.n_unscored} without gold answers (answered, not scored)"]
        tokens_in = sum(r.prompt_tokens for r in self.records)
        tokens_out = sum(r.completion_tokens for r in self.records)
        out.append(f"reader {self.model}, k={self.k}: {tokens_in} tokens in / {tokens_out} out over the answered "
                   f"questions; {self.seconds:.1f} s this run")
        if self.failed:
            out.append(f"FAILED: {self.failed} questions could not be answered (the reader's calls failed after every "
                       f"retry); they are listed in {self.failed_path or 'the failures sidecar'}, and rerunning the "
                       "same command retries only them")
        if self.stopped:
            out.append(f"stopped early: {self.stopped}")
        return out


# ---------------------------------------------------------------------------------------------- answering


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected an int >= 1 (passages per question), got {k!r}")
    return k


def answer_questions(
    retrieve,
    queries: Mapping[str, Query],
    corpus: Mapping[str, Passage],
    client,
    k: int = 5,
    out=None,
    *,
    config: ReaderConfig | None = None,
    retriever=None,
    allow_mismatch: bool = False,
    chunk: int | None = None,
    progress: bool = True,
    max_consecutive_failures: int | None = None,
) -> RagResult:
    """Answer every question of ``queries`` from its top-``k`` passages and score the answers.

    ``retrieve``: a ``DenseIndex`` (with ``retriever=``, the model that built it; see ``IndexRetrieve``) or a
    callable ``(texts, k) -> Hits``; its optional ``retrieval_id`` attribute is recorded. ``client``: an
    ``LLMClient`` (``chat``, ``model``, ``ledger``, ``max_concurrency``). ``out``: the predictions JSONL (appended
    to; questions already in it are skipped; ``None`` keeps nothing). Questions are retrieved for in batches of
    ``chunk`` (default 64), then answered side by side (``client.max_concurrency`` at a time), each line written
    as soon as its answer comes (:mod:`intdistill.journal`). A question whose reader call fails after every retry
    is listed in ``<out>.failed.jsonl`` and the others go on (the circuit breaker of
    :func:`intdistill.llm.items.run_items` stops a run whose endpoint looks down). A ``BudgetExceeded`` stop
    returns with ``stopped`` set; Ctrl-C propagates after the calls in flight are cached. Policies: module
    docstring.
    """
    from intdistill.journal import Journal
    from intdistill.llm.errors import BudgetExceeded
    from intdistill.llm.items import DEFAULT_MAX_CONSECUTIVE_FAILURES, run_items

    k = _check_k(k)
    config = config or ReaderConfig()
    if not queries:
        raise ValueError("queries: expected at least one question, got none")
    if not corpus:
        raise ValueError("corpus: expected at least one passage, got none")
    retrieve, retrieval_id = _as_retrieve(retrieve, retriever, allow_mismatch)
    chunk = 64 if chunk is None else chunk
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk: expected an int >= 1, got {chunk!r}")
    identity = dict(model=client.model, prompt_hash=config.prompt_hash, k=k, max_words=config.max_words,
                    max_tokens=config.max_tokens, temperature=float(config.temperature), seed=config.seed,
                    retrieval_id=retrieval_id)

    out_path = Path(out) if out is not None else None
    journal = (Journal(out_path, parse=_record_from_obj, check=lambda done: _check_identity(done, identity, out_path))
               if out_path is not None else None)
    done = dict(journal.done) if journal is not None else {}
    done_before = {q: done[q] for q in queries if q in done}
    todo = [q for q in queries if q not in done]

    t0 = time.perf_counter()
    new: dict[str, RagRecord] = {}
    stopped = None
    failed: list[str] = []
    try:
        retrieved: dict[str, tuple] = {}
        for s in range(0, len(todo), chunk):
            qids = todo[s : s + chunk]
            retrieved.update(zip(qids, _retrieved(retrieve, qids, [queries[q].text for q in qids], k, corpus)))

        def work(q: str):
            ids, _ = retrieved[q]
            return client.chat(reader_messages(queries[q].text, [corpus[d] for d in ids], config), **config.decoding())

        def finished(q: str, res) -> None:
            ids, scores = retrieved[q]
            rec = RagRecord(
                qid=q, question=queries[q].text, docids=ids, scores=scores, prediction=parse_answer(res.text),
                output=res.text, answers=(), em=None, f1=None, hit_rank=None, template=config.template,
                prompt_tokens=res.prompt_tokens or 0, completion_tokens=res.completion_tokens or 0,
                cached=bool(res.cached), **identity,
            )
            (rec,) = _scored([rec], queries, corpus)
            new[q] = rec
            if journal is not None:
                journal.append(rec.to_json(), rec)

        def fail(q: str, err) -> None:
            failed.append(q)
            if journal is not None:
                journal.fail(q, err)

        try:
            run_items(todo, work, finished, on_fail=fail,
                      concurrency=int(getattr(client, "max_concurrency", 1) or 1),
                      max_consecutive_failures=(DEFAULT_MAX_CONSECUTIVE_FAILURES if max_consecutive_failures is None
                                                else max_consecutive_failures),
                      client=client if hasattr(client, "ledger") else None, progress=progress, desc="rag",
                      total=len(queries), initial=len(done_before))
        except BudgetExceeded as e:
            stopped = str(e)
            log.warning("%s; %d questions answered, %d left", stopped, len(done_before) + len(new),
                        len(queries) - len(done_before) - len(new))
    finally:
        if journal is not None:
            journal.close()
    records = _scored([done_before[q] for q in queries if q in done_before], queries, corpus)
    by_qid = {r.qid: r for r in records} | new
    n_failed = sum(1 for q in queries if journal is not None and q in journal.failures) if journal else len(failed)
    return RagResult(
        records=tuple(by_qid[q] for q in queries if q in by_qid),
        n_questions=len(queries),
        n_done_before=len(done_before),
        n_answered_now=len(new),
        k=k,
        model=client.model,
        ledger=client.ledger,
        stopped=stopped,
        out=str(out_path) if out_path is not None else None,
        seconds=time.perf_counter() - t0,
        failed=max(n_failed, len(failed)),
        failed_path=str(journal.failures.path) if journal is not None else None,
    )


# ---------------------------------------------------------------------------------------------- ask


@dataclass(frozen=True)
class Source:
    """A passage the reader was shown: ``rank`` 1 = best retrieved, ``snippet`` = its first words."""

    rank: int
    docid: str
    title: str
    score: float
    snippet: str


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str  # parse_answer(output)
    output: str  # the reader's raw text
    sources: tuple[Source, ...]
    model: str
    prompt_hash: str
    cached: bool
    prompt_tokens: int
    completion_tokens: int


def ask(
    question: str,
    retrieve,
    corpus: Mapping[str, Passage],
    client,
    k: int = 3,
    *,
    config: ReaderConfig | None = None,
    retriever=None,
    allow_mismatch: bool = False,
    snippet_words: int = 30,
) -> Answer:
    """Answer one ``question`` from its top-``k`` passages (``retrieve`` as in ``answer_questions``); the
    answer comes with its sources (id, title, score, the first ``snippet_words`` words of the text)."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question: expected a non-empty str, got {question!r}")
    k = _check_k(k)
    if isinstance(snippet_words, bool) or not isinstance(snippet_words, int) or snippet_words < 1:
        raise ValueError(f"snippet_words: expected an int >= 1, got {snippet_words!r}")
    config = config or ReaderConfig()
    retrieve, _ = _as_retrieve(retrieve, retriever, allow_mismatch)
    ((ids, scores),) = _retrieved(retrieve, ["question"], [question], k, corpus)
    passages = [corpus[d] for d in ids]
    res = client.chat(reader_messages(question, passages, config), **config.decoding())
    sources = []
    for rank, (p, score) in enumerate(zip(passages, scores), 1):
        words = p.text.split()
        snippet = " ".join(words[:snippet_words]) + (" ..." if len(words) > snippet_words else "")
        sources.append(Source(rank, p.id, p.title, score, snippet))
    return Answer(
        question=question, answer=parse_answer(res.text), output=res.text, sources=tuple(sources), model=client.model,
        prompt_hash=config.prompt_hash, cached=bool(res.cached), prompt_tokens=res.prompt_tokens or 0,
        completion_tokens=res.completion_tokens or 0,
    )
