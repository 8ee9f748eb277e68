"""Typed records of intdistill's data: passages, queries, qrels, runs, datasets, and ``DataError``."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field


log = logging.getLogger("intdistill.data")

_WHITESPACE = re.compile(r"\s")
_QRELS_COLUMNS = {3: "'query-id corpus-id score' (BEIR TSV)", 4: "'qid iter docid rel' (TREC qrels)"}
_RUN_COLUMNS = "'qid Q0 docid rank score tag'"


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


# --------------------------------------------------------------------------------------------- records


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


class Corpus(dict):
    """``{docid: Passage}`` in file order, with ``source`` (path or None) and ``skipped`` ({reason: count})."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.source: str | None = None
        self.skipped: dict[str, int] = {}


class Queries(dict):
    """``{qid: Query}`` in file order, with ``source`` (path or None) and ``skipped`` ({reason: count})."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.source: str | None = None
        self.skipped: dict[str, int] = {}


class Qrels(dict):
    """Relevance judgements ``{qid: {docid: int relevance}}``.

    ``source`` is the file they came from (None when built in memory); ``skipped`` counts lines left
    out on purpose (``repeated_judgement``: the same (qid, docid, rel) again; a *different* rel is an error).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.source: str | None = None
        self.skipped: dict[str, int] = {}

    def n_judgements(self) -> int:
        return sum(len(d) for d in self.values())


class Run(dict):
    """A ranked result list per query ``{qid: {docid: float score}}``; higher score ranks first."""

    def __init__(self, *args, tag: str = "intdistill", **kwargs):
        super().__init__(*args, **kwargs)
        self.tag = tag
        self.source: str | None = None
        self.skipped: dict[str, int] = {}

    def ranked(self, qid: str) -> list[str]:
        """Doc ids of one query, best first (ties broken by doc id, descending, as trec_eval does)."""
        docs = self.get(qid, {})
        return [d for d, _ in sorted(docs.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]

    def n_pairs(self) -> int:
        return sum(len(d) for d in self.values())


@dataclass(frozen=True)
class Dataset:
    """One retrieval data set: the passages, the queries of one split, and their judgements."""

    corpus: Corpus
    queries: Queries
    qrels: Qrels

    @property
    def skipped(self) -> dict[str, int]:
        """What the loaders left out on purpose, ``{"<part>.<reason>": count}`` (empty when nothing)."""
        out = {}
        for part in ("corpus", "queries", "qrels"):
            for reason, n in getattr(getattr(self, part), "skipped", {}).items():
                out[f"{part}.{reason}"] = n
        return out


@dataclass(frozen=True)
class ValidationReport:
    """Counts over what ``validate`` was given (``None``: that part was not given), and the non-fatal
    findings. Fatal findings (ids that name nothing) raise ``DataError`` instead.

    - ``unjudged_queries``: in ``queries`` but not in ``qrels`` (normal when queries span several splits).
    - ``judged_without_relevant``: in ``qrels`` with no judgement > 0; every metric is 0 for them.
    - ``judged_missing_from_run``: in ``qrels`` with no results in ``run``; they score 0 when evaluated.
    - ``run_unjudged_queries``: in ``run`` but not in ``qrels``; evaluation ignores them.
    """

    n_queries: int | None = None
    n_passages: int | None = None
    n_judged_queries: int | None = None
    n_judgements: int | None = None
    n_relevant: int | None = None
    n_run_queries: int | None = None
    n_run_pairs: int | None = None
    unjudged_queries: tuple[str, ...] = ()
    judged_without_relevant: tuple[str, ...] = ()
    judged_missing_from_run: tuple[str, ...] = ()
    run_unjudged_queries: tuple[str, ...] = ()

    def warnings(self) -> list[str]:
        """One line per finding that will skew an evaluation."""
        out = []
        if self.judged_without_relevant:
            out.append(f"{len(self.judged_without_relevant)} judged queries have no relevant passage "
                       f"(e.g. {self.judged_without_relevant[0]!r}); every metric is 0 for them")
        if self.judged_missing_from_run:
            out.append(f"{len(self.judged_missing_from_run)} judged queries have no results in the run "
                       f"(e.g. {self.judged_missing_from_run[0]!r}); they score 0")
        return out
