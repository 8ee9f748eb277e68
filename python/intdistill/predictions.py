"""The RAG predictions file: one JSON line per answered question (:class:`RagRecord`), read back with
:func:`load_predictions`. A file made with another model, reader prompt, k, reader setting or retriever
(``RUN_IDENTITY``) is refused with a ``DataError`` naming the file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from intdistill.data import DataError, iter_jsonl

# ---------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RagRecord:
    """One answered question: a line of the predictions file."""

    qid: str
    question: str
    docids: tuple[str, ...]  # retrieved passage ids, best first
    scores: tuple[float, ...]  # their retrieval scores
    prediction: str  # parse_answer(output)
    output: str  # the reader's raw text
    answers: tuple[str, ...]  # gold answers (empty: not scored)
    em: float | None  # SQuAD exact match (None: no gold answers)
    f1: float | None  # SQuAD token F1 (None: no gold answers)
    hit_rank: int | None  # rank (1-based) of the first retrieved passage holding a gold answer; None: none / unscored
    model: str
    template: str
    prompt_hash: str
    k: int
    max_words: int | None
    max_tokens: int
    temperature: float
    seed: int
    retrieval_id: str  # the retriever's fingerprint ("" when the retrieve callable names none)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False  # the answer came from the LLM cache

    @property
    def scored(self) -> bool:
        return self.em is not None

    def to_json(self) -> dict:
        d = asdict(self)
        for key in ("docids", "scores", "answers"):
            d[key] = list(d[key])
        return d


#: What a predictions file's lines must share with the run that appends to it.
RUN_IDENTITY = ("model", "prompt_hash", "k", "max_words", "max_tokens", "temperature", "seed", "retrieval_id")
_REQUIRED = ("qid", "question", "docids", "scores", "prediction", "output", "model", "prompt_hash", "k")


def _record_from_obj(obj: dict, path, line: int) -> RagRecord:
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise DataError(path, line, f"expected a prediction object with fields {', '.join(_REQUIRED)}; "
                                    f"missing {', '.join(missing)}")
    docids, scores = obj["docids"], obj["scores"]
    if not isinstance(docids, list) or not docids or not all(isinstance(d, str) for d in docids):
        raise DataError(path, line, f"expected 'docids' to be a non-empty list of ids, got {docids!r:.80}")
    if (not isinstance(scores, list) or len(scores) != len(docids)
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores)):
        raise DataError(path, line, f"expected 'scores' to be {len(docids)} numbers (one per doc id), got {scores!r:.80}")
    k = obj["k"]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DataError(path, line, f"expected 'k' to be a positive int, got {k!r}")
    for key in ("question", "prediction", "output", "model", "prompt_hash"):
        if not isinstance(obj[key], str):
            raise DataError(path, line, f"expected {key!r} to be a string, got {type(obj[key]).__name__}")
    known = {f.name for f in fields(RagRecord)}
    values = {key: value for key, value in obj.items() if key in known}
    values.update(
        qid=str(obj["qid"]), docids=tuple(docids), scores=tuple(float(s) for s in scores),
        answers=tuple(obj.get("answers") or ()), em=obj.get("em"), f1=obj.get("f1"), hit_rank=obj.get("hit_rank"),
        template=str(obj.get("template", "")), max_words=obj.get("max_words"),
        max_tokens=obj.get("max_tokens", 0), temperature=obj.get("temperature", 0.0), seed=obj.get("seed", 0),
        retrieval_id=str(obj.get("retrieval_id", "")),
    )
    return RagRecord(**values)


def load_predictions(path) -> dict[str, RagRecord]:
    """Read a predictions file written by ``answer_questions``. Errors name the file and line; a cut-off last
    line (a crash mid-write) is skipped with a warning (its question is answered again on resume)."""
    path = Path(path)
    records: dict[str, RagRecord] = {}
    for line_no, obj in iter_jsonl(path, appended=True):
        rec = _record_from_obj(obj, path, line_no)
        if rec.qid in records:
            raise DataError(path, line_no, f"expected one line per question, got question {rec.qid!r} again")
        records[rec.qid] = rec
    return records


def _check_identity(done: Mapping[str, RagRecord], want: dict, path) -> None:
    for rec in done.values():
        diff = [f"{key} {getattr(rec, key)!r} vs {want[key]!r}" for key in RUN_IDENTITY if getattr(rec, key) != want[key]]
        if diff:
            raise DataError(path, None, f"existing predictions (e.g. question {rec.qid!r}) were made with another "
                                        f"setting than this run's ({'; '.join(diff)}, file vs run): write to another "
                                        "--out, or delete the file to start over")
