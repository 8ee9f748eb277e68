"""Corpus, queries, qrels and runs: loading, validation and typed records.

Records (one per thing):
- ``Passage(id, text, title)``; a corpus is an insertion-ordered ``dict[str, Passage]``.
- ``Query(id, text, answers)``; a query set is an insertion-ordered ``dict[str, Query]``.
- ``Qrels``: ``{qid: {docid: relevance}}`` (a dict subclass, so plain dicts interoperate).
- ``Run``: ``{qid: {docid: score}}`` plus a ``tag`` (a dict subclass).
"""

from __future__ import annotations

from dataclasses import dataclass, field


class DataError(ValueError):
    """Bad input data. The message names the file, the line (1-based) and what was expected."""

    def __init__(self, path, line, message):
        self.path = str(path) if path is not None else None
        self.line = line
        self.reason = message
        where = self.path or "<input>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Passage:
    id: str
    text: str
    title: str = ""

    def full_text(self, sep: str = " ") -> str:
        """``title + sep + text`` (just ``text`` when there is no title)."""
        return f"{self.title}{sep}{self.text}" if self.title else self.text


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    answers: tuple[str, ...] = field(default_factory=tuple)


class Qrels(dict):
    """Relevance judgements ``{qid: {docid: int relevance}}``."""

    def n_judgements(self) -> int:
        return sum(len(d) for d in self.values())


class Run(dict):
    """A ranked result list per query ``{qid: {docid: float score}}``; higher score ranks first."""

    def __init__(self, *args, tag: str = "intdistill", **kwargs):
        super().__init__(*args, **kwargs)
        self.tag = tag

    def ranked(self, qid: str) -> list[str]:
        """Doc ids of one query, best first (ties broken by doc id, descending, as trec_eval does)."""
        docs = self.get(qid, {})
        return [d for d, _ in sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]
