"""Corpus, queries, qrels and runs: loading, validation and typed records.

Records (one per thing):
- ``Passage(id, text, title)``; a corpus is an insertion-ordered ``dict[str, Passage]`` (a ``Corpus``).
- ``Query(id, text, answers)``; a query set is an insertion-ordered ``dict[str, Query]`` (a ``Queries``).
- ``Qrels``: ``{qid: {docid: relevance}}`` (a dict subclass, so plain dicts interoperate).
- ``Run``: ``{qid: {docid: score}}`` plus a ``tag`` (a dict subclass).
- ``Dataset(corpus, queries, qrels)``: what ``load_beir`` and ``load_squad`` return.

Every loaded container also carries ``source`` (the file it came from, or ``None``) and ``skipped``
(``{reason: count}`` of what the loader left out on purpose; empty when nothing was). Skips are also
logged as warnings on ``logging.getLogger("intdistill.data")``.

Formats (chosen by path; ``.gz`` is decompressed transparently everywhere):
- a directory: BEIR (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``);
- ``*.json``: SQuAD v1.1 (one passage per paragraph, id ``<article title>#<paragraph index>``, the title
  kept as written, e.g. ``Super_Bowl_50#0``; ``Passage.title`` has underscores turned into spaces);
- anything else: JSON Lines for corpus and queries, TREC or BEIR TSV for qrels, TREC for runs.

Policies:
- Text is UTF-8 (a leading BOM is ignored); LF, CRLF and CR line ends all count as one line end.
  Blank lines carry no data and are passed over in every line format.
- Ids are non-empty strings without whitespace (TREC files are whitespace-separated); JSON integers are
  accepted as ids and turned into strings. Duplicate ids are errors.
- Bad input raises ``DataError(path, line, message)``: the file, the 1-based line and what was expected
  versus what came. In a SQuAD JSON file, ``line`` is ``None`` and the message names the JSON path.
- Line numbers are not stored per record: when an error needs the line of an earlier record (a duplicate
  id, an unknown id found by ``validate``), the file is scanned again. The common path pays nothing.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import os
import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, Mapping

from intdistill.loaded import shared_load

log = logging.getLogger(__name__)

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


# ------------------------------------------------------------------------------------------ low level


def _is_gz(path) -> bool:
    return os.fspath(path).endswith(".gz")


def _open_text(path) -> IO[str]:
    """UTF-8 text (BOM dropped), universal newlines; ``.gz`` decompressed."""
    if _is_gz(path):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline=None)
    return open(path, encoding="utf-8-sig", newline=None, buffering=1 << 20)


def _decode_error(path, exc: UnicodeDecodeError) -> DataError:
    """Find the line and byte offset of the first byte that is not UTF-8 (the text reader decodes in
    blocks, so it cannot tell)."""
    opener = gzip.open if _is_gz(path) else open
    offset = 0
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                where = " (offset in the decompressed stream)" if _is_gz(path) else ""
                return DataError(path, lineno, f"expected UTF-8 text, got undecodable byte 0x{raw[e.start]:02x} "
                                               f"at byte offset {offset + e.start}{where}")
            offset += len(raw)
    return DataError(path, None, f"expected UTF-8 text, got {exc}")


@contextmanager
def _decoding(path):
    try:
        yield
    except UnicodeDecodeError as e:
        raise _decode_error(path, e) from None


def _short(text: str, limit: int = 80) -> str:
    r = repr(text)
    return r if len(r) <= limit else r[: limit - 3] + "..."


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean",
               type(None): "null"}


def _describe(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    text = json.dumps(value, ensure_ascii=False, default=str)
    text = text if len(text) <= 60 else text[:57] + "..."
    return "null" if value is None else f"{kind} {text}"


def _check_id(value: Any, path, line, what: str) -> str:
    """A JSON id: a non-empty string (or integer, turned into a string) without whitespace."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(path, line, f"expected {what} to be a string, got {_describe(value)}")
    s = str(value)
    if not s or _WHITESPACE.search(s):
        raise DataError(path, line, f"expected {what} to be non-empty without whitespace "
                                    f"(TREC files are whitespace-separated), got {_short(s)}")
    return s


def _get_id(obj: dict, path, line) -> str:
    keys = [k for k in ("_id", "id") if k in obj]
    if not keys:
        raise DataError(path, line, f"expected a field '_id' or 'id', got fields {sorted(obj)}")
    if len(keys) == 2 and obj["_id"] != obj["id"]:
        raise DataError(path, line, f"expected '_id' and 'id' to agree, got {_describe(obj['_id'])} "
                                    f"and {_describe(obj['id'])}")
    return _check_id(obj[keys[0]], path, line, f"'{keys[0]}'")


def _get_str(obj: dict, keys: tuple[str, ...], path, line, *, required: bool) -> str | None:
    """The first of ``keys`` present (a string; None/absent allowed when not required)."""
    present = [k for k in keys if k in obj and obj[k] is not None]
    if not present:
        if required:
            if any(k in obj for k in keys):
                null = next(k for k in keys if k in obj)
                raise DataError(path, line, f"expected '{null}' to be a string, got null")
            names = " or ".join(f"'{k}'" for k in keys)
            raise DataError(path, line, f"expected a string field {names}, got fields {sorted(obj)}")
        return None
    if len(present) > 1 and len({json.dumps(obj[k]) for k in present}) > 1:
        raise DataError(path, line, f"expected at most one of {present} (or equal values), got different values")
    value = obj[present[0]]
    if not isinstance(value, str):
        raise DataError(path, line, f"expected '{present[0]}' to be a string, got {_describe(value)}")
    return value


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _skip(container, reason: str, n: int, path) -> None:
    if n:
        container.skipped[reason] = container.skipped.get(reason, 0) + n
        log.warning("%s: skipped %d (%s)", path, n, reason.replace("_", " "))


# -------------------------------------------------------------------------------------------- JSONL


def iter_jsonl(path, *, appended: bool = False, partial_first_line: bool = True) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)`` for each non-blank line; every line must be a JSON object.

    ``appended=True`` is for files written one line at a time (labels, RAG predictions): a last line without its
    newline that is not valid JSON was cut off mid-write by a crash, so it is skipped with a warning (its record
    is made again on resume); with ``partial_first_line=False`` a cut first line is still an error. Every other
    bad line is a DataError naming the file and line."""
    with _open_text(path) as f, _decoding(path):
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                if appended and not line.endswith("\n") and (partial_first_line or lineno > 1):
                    log.warning("%s:%d: ignoring an incomplete last line (interrupted write)", path, lineno)
                    continue
                raise DataError(path, lineno, f"expected a JSON object, got invalid JSON ({e.msg} at column "
                                              f"{e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(path, lineno, f"expected a JSON object, got {_describe(obj)}")
            yield lineno, obj


def load_jsonl(path) -> list[dict]:
    """All objects of a JSON Lines file, in order (blank lines passed over)."""
    return [obj for _, obj in iter_jsonl(path)]


def _to_jsonable(record: Any) -> Any:
    if is_dataclass(record) and not isinstance(record, type):
        return asdict(record)
    if hasattr(record, "_asdict"):  # NamedTuple
        return record._asdict()
    return record


@contextmanager
def _atomic_writer(path, *, append: bool = False):
    """Text writer that replaces ``path`` only once everything is written (``append`` writes in place)."""
    path = os.fspath(path)
    opener = (lambda p, m: gzip.open(p, m + "t", encoding="utf-8")) if _is_gz(path) else (
        lambda p, m: open(p, m, encoding="utf-8", newline="\n"))
    if append:
        with opener(path, "a") as f:
            yield f
        return
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with opener(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def dump_jsonl(records: Iterable[Any], path, *, append: bool = False) -> int:
    """Write one JSON object per line (UTF-8, strict JSON: NaN is refused); returns the number written.

    Records may be mappings, dataclasses or NamedTuples. Without ``append`` the file is replaced
    atomically (written to a temporary file first), so a crash never leaves half a file.
    """
    n = 0
    with _atomic_writer(path, append=append) as f:
        for i, record in enumerate(records):
            obj = _to_jsonable(record)
            if not isinstance(obj, Mapping):
                raise ValueError(f"record {i}: expected a mapping, dataclass or NamedTuple, "
                                 f"got {type(record).__name__}")
            try:
                f.write(json.dumps(obj, ensure_ascii=False, allow_nan=False))
            except (TypeError, ValueError) as e:
                raise ValueError(f"record {i}: expected JSON-serialisable values, got {e}") from None
            f.write("\n")
            n += 1
    return n


# -------------------------------------------------------------------------------------- corpus/queries


def _beir_file(directory: Path, name: str) -> Path:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    found = sorted(p.name for p in directory.iterdir())
    raise DataError(directory, None, f"expected a BEIR directory with {name} (or {name}.gz), found {found}")


def _is_squad(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".json") or name.endswith(".json.gz")


def _find_first_line(path, predicate: Callable[[int, dict], bool]) -> int | None:
    for lineno, obj in iter_jsonl(path):
        if predicate(lineno, obj):
            return lineno
    return None


def _corpus_records(p) -> Iterator[tuple[int | None, str, str, str]]:
    """``(line, id, title, text)`` of a JSONL, TSV or ``irds:`` corpus."""
    from intdistill import formats

    if formats.is_irds(p):
        for doc in formats.irds_records(p, "docs"):
            yield None, str(doc.doc_id), str(getattr(doc, "title", "") or ""), str(getattr(doc, "text", "") or "")
    elif formats.is_tsv(p):
        for lineno, docid, title, text in formats.iter_tsv(p, "corpus"):
            yield lineno, _check_id(docid, p, lineno, "the passage id"), title, text
    else:
        for lineno, obj in iter_jsonl(p):
            docid = _get_id(obj, p, lineno)
            text = _get_str(obj, ("text",), p, lineno, required=True)
            yield lineno, docid, _get_str(obj, ("title",), p, lineno, required=False) or "", text


@shared_load("corpus")
def load_corpus(path, *, skip_empty: bool = False) -> Corpus:
    """Passages from JSONL (``_id``|``id``, ``text``, optional ``title``), TSV (``id<TAB>text``,
    ``id<TAB>title<TAB>text``, header optional; :mod:`intdistill.formats`), a BEIR dir, SQuAD JSON, or
    ``irds:NAME`` (an ``ir_datasets`` dataset with a local copy).

    A passage whose text is empty (or whitespace) is an error; with ``skip_empty=True`` it is left out
    and counted in ``skipped["empty_text"]`` instead. Extra fields are ignored.
    """
    from intdistill import formats

    p = path if formats.is_irds(path) else Path(path)
    if isinstance(p, Path) and p.is_dir():
        p = _beir_file(p, "corpus.jsonl")
    elif isinstance(p, Path) and _is_squad(p):
        return _read_squad(p)[0]
    corpus = Corpus()
    corpus.source = str(p)
    empty = 0
    for lineno, docid, title, text in _corpus_records(p):
        if not text.strip():
            if skip_empty:
                empty += 1
                continue
            raise DataError(p, lineno, f"expected a non-empty 'text' for passage {docid!r}, got {_short(text)}")
        if docid in corpus:
            if formats.is_irds(p) or formats.is_tsv(p):
                raise DataError(p, lineno, f"expected unique passage ids, got {docid!r} again")
            first = _find_first_line(p, lambda ln, o: ln < lineno and str(o.get("_id", o.get("id"))) == docid)
            raise DataError(p, lineno, f"expected unique passage ids, got {docid!r} again (first on line {first})")
        corpus[docid] = Passage(docid, text, title)
    _skip(corpus, "empty_text", empty, p)
    if not corpus:
        raise DataError(p, None, "expected at least one passage, got none")
    return corpus


@shared_load("queries")
def load_queries(path) -> Queries:
    """Queries from JSONL (``_id``|``id``, ``text``|``question``, optional ``answers: [str]``), TSV
    (``id<TAB>text``), a BEIR dir (``queries.jsonl``), SQuAD JSON or ``irds:NAME``. Answers are de-duplicated keeping order; an empty answer string
    is an error (it would match every passage). Extra fields are ignored."""
    from intdistill import formats

    if formats.is_irds(path):
        queries = Queries()
        queries.source = path
        for q in formats.irds_records(path, "queries"):
            text = str(getattr(q, "text", "") or "")
            if text.strip():
                queries[str(q.query_id)] = Query(str(q.query_id), text)
        if not queries:
            raise DataError(path, None, "expected at least one query, got none")
        return queries
    p = Path(path)
    if p.is_dir():
        p = _beir_file(p, "queries.jsonl")
    elif _is_squad(p):
        return _read_squad(p)[1]
    queries = Queries()
    queries.source = str(p)
    if formats.is_tsv(p):
        for lineno, qid, _, text in formats.iter_tsv(p, "queries"):
            qid = _check_id(qid, p, lineno, "the query id")
            if not text.strip():
                raise DataError(p, lineno, f"expected a non-empty query text for {qid!r}, got {_short(text)}")
            if qid in queries:
                raise DataError(p, lineno, f"expected unique query ids, got {qid!r} again")
            queries[qid] = Query(qid, text)
        if not queries:
            raise DataError(p, None, "expected at least one query, got none")
        return queries
    for lineno, obj in iter_jsonl(p):
        qid = _get_id(obj, p, lineno)
        text = _get_str(obj, ("text", "question"), p, lineno, required=True)
        if not text.strip():
            raise DataError(p, lineno, f"expected a non-empty query text for {qid!r}, got {_short(text)}")
        answers = obj.get("answers")
        if answers is None:
            answers = []
        if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
            raise DataError(p, lineno, f"expected 'answers' to be a list of non-empty strings, "
                                       f"got {_describe(answers)}")
        if qid in queries:
            first = _find_first_line(p, lambda ln, o: ln < lineno and str(o.get("_id", o.get("id"))) == qid)
            raise DataError(p, lineno, f"expected unique query ids, got {qid!r} again (first on line {first})")
        queries[qid] = Query(qid, text, _dedupe(answers))
    if not queries:
        raise DataError(p, None, "expected at least one query, got none")
    return queries


@shared_load("sources")
def load_sources(path) -> dict[str, str]:
    """``qid -> source passage id`` of a generated queries file (`intdistill generate-queries`: each line names
    the passage it was written from in ``"source"``). Lines without one are an error naming the line."""
    p = Path(path)
    out: dict[str, str] = {}
    for lineno, obj in iter_jsonl(p):
        qid = _get_id(obj, p, lineno)
        if "source" not in obj:
            raise DataError(p, lineno, f"expected a 'source' field (the passage query {qid!r} was written from); "
                                       "give the queries file that `intdistill generate-queries` wrote")
        out[qid] = _check_id(obj["source"], p, lineno, "'source'")
    return out


# ---------------------------------------------------------------------------------------------- SQuAD


def _squad_field(obj: Any, key: str, kind: type, path, where: str) -> Any:
    if not isinstance(obj, dict):
        raise DataError(path, None, f"{where}: expected a JSON object, got {_describe(obj)}")
    if key not in obj:
        raise DataError(path, None, f"{where}: expected a field '{key}', got fields {sorted(obj)}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(path, None, f"{where}.{key}: expected {_JSON_TYPES[kind]}, got {_describe(value)}")
    return value


def _read_squad(path: Path) -> tuple[Corpus, Queries, Qrels]:
    """SQuAD v1.1 JSON -> (corpus, queries, qrels). Questions with no answer (SQuAD 2.0 ``is_impossible``)
    are left out of queries and qrels and counted as ``skipped["no_answer"]``: open-domain QA needs one."""
    with _open_text(path) as f, _decoding(path):
        try:
            doc = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(path, e.lineno, f"expected SQuAD JSON, got invalid JSON ({e.msg} at column "
                                            f"{e.colno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(path, None, "expected a SQuAD JSON object with a 'data' list (JSON Lines files should "
                                    f"not end in .json), got {_describe(doc)}")
    corpus, queries, qrels = Corpus(), Queries(), Qrels()
    for c in (corpus, queries, qrels):
        c.source = str(path)
    no_answer = 0
    for ai, article in enumerate(doc["data"]):
        where = f"data[{ai}]"
        title = _squad_field(article, "title", str, path, where)
        _check_id(title, path, None, f"{where}.title (it becomes the passage id)")
        for pi, para in enumerate(_squad_field(article, "paragraphs", list, path, where)):
            pwhere = f"{where}.paragraphs[{pi}]"
            context = _squad_field(para, "context", str, path, pwhere)
            if not context.strip():
                raise DataError(path, None, f"{pwhere}.context: expected non-empty text, got {_short(context)}")
            pid = f"{title}#{pi}"
            if pid in corpus:
                raise DataError(path, None, f"{pwhere}: expected unique article titles, got passage id {pid!r} twice")
            corpus[pid] = Passage(pid, context, title.replace("_", " "))
            for qi, qa in enumerate(_squad_field(para, "qas", list, path, pwhere)):
                qwhere = f"{pwhere}.qas[{qi}]"
                question = _squad_field(qa, "question", str, path, qwhere)
                if "id" not in qa:
                    raise DataError(path, None, f"{qwhere}: expected a field 'id', got fields {sorted(qa)}")
                qid = _check_id(qa["id"], path, None, f"{qwhere}.id")
                if not question.strip():
                    raise DataError(path, None, f"{qwhere}.question: expected non-empty text, got {_short(question)}")
                answers = []
                for ni, ans in enumerate(_squad_field(qa, "answers", list, path, qwhere)):
                    text = _squad_field(ans, "text", str, path, f"{qwhere}.answers[{ni}]")
                    if not text.strip():
                        raise DataError(path, None, f"{qwhere}.answers[{ni}].text: expected non-empty text, "
                                                    f"got {_short(text)}")
                    answers.append(text)
                if qid in queries:
                    raise DataError(path, None, f"{qwhere}.id: expected unique question ids, got {qid!r} twice")
                if not answers or qa.get("is_impossible") is True:
                    no_answer += 1
                    continue
                queries[qid] = Query(qid, question, _dedupe(answers))
                qrels[qid] = {pid: 1}
    _skip(queries, "no_answer", no_answer, path)
    _skip(qrels, "no_answer", no_answer, path)
    if not corpus:
        raise DataError(path, None, "expected at least one paragraph, got none")
    return corpus, queries, qrels


def load_squad(path) -> Dataset:
    """SQuAD v1.1 JSON as an open-domain data set: every paragraph a passage (``<title>#<i>``), every
    answerable question a query with its gold answers, its own paragraph its one relevant passage."""
    corpus, queries, qrels = _read_squad(Path(path))
    return Dataset(corpus, queries, qrels)


# ---------------------------------------------------------------------------------------------- qrels


def _iter_qrels(path) -> Iterator[tuple[int, str, str, str]]:
    """Yield ``(line, qid, docid, rel text)``. The format is set by the first non-blank line: 4 columns is
    TREC, 3 is BEIR TSV; a 3-column first line whose last field is not a number is BEIR's header."""
    ncols = 0
    first = 0
    with _open_text(path) as f, _decoding(path):
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if not ncols:
                if len(parts) not in _QRELS_COLUMNS:
                    raise DataError(path, lineno, f"expected {' or '.join(_QRELS_COLUMNS.values())}, "
                                                  f"got {len(parts)} columns: {_short(line.rstrip())}")
                ncols, first = len(parts), lineno
                if ncols == 3 and not _is_number(parts[2]):
                    continue  # header
            if len(parts) != ncols:
                raise DataError(path, lineno, f"expected {ncols} columns {_QRELS_COLUMNS[ncols]} as on line {first}, "
                                              f"got {len(parts)}: {_short(line.rstrip())}")
            if ncols == 4:
                yield lineno, parts[0], parts[2], parts[3]
            else:
                yield lineno, parts[0], parts[1], parts[2]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@shared_load("qrels")
def load_qrels(path) -> Qrels:
    """Judgements from TREC qrels (``qid iter docid rel``), BEIR TSV (``query-id corpus-id score``, header
    optional) or SQuAD JSON (each question -> its paragraph, rel 1). The line format is detected per file.

    Relevance must be an integer (negative allowed). The same (qid, docid, rel) twice is counted in
    ``skipped["repeated_judgement"]``; the same pair with a different rel is an error.
    """
    from intdistill import formats

    if formats.is_irds(path):
        qrels = Qrels()
        qrels.source = path
        for r in formats.irds_records(path, "qrels"):
            qrels.setdefault(str(r.query_id), {})[str(r.doc_id)] = int(r.relevance)
        if not qrels:
            raise DataError(path, None, "expected at least one judgement, got none")
        return qrels
    p = Path(path)
    if p.is_dir():
        raise DataError(p, None, "expected a qrels file, got a directory "
                                 "(for a BEIR directory use load_beir(dir, split))")
    if _is_squad(p):
        return _read_squad(p)[2]
    qrels = Qrels()
    qrels.source = str(p)
    repeats = 0
    for lineno, qid, docid, rel_text in _iter_qrels(p):
        try:
            rel = int(rel_text)
        except ValueError:
            raise DataError(p, lineno, f"expected an integer relevance, got {_short(rel_text)}") from None
        docs = qrels.get(qid)
        if docs is None:
            docs = qrels[qid] = {}
        old = docs.get(docid)
        if old is None:
            docs[docid] = rel
        elif old == rel:
            repeats += 1
        else:
            first = next(ln for ln, q, d, _ in _iter_qrels(p) if q == qid and d == docid)
            raise DataError(p, lineno, f"expected one relevance per (query, passage), got {rel} for ({qid!r}, "
                                       f"{docid!r}) and {old} on line {first}")
    _skip(qrels, "repeated_judgement", repeats, p)
    if not qrels:
        raise DataError(p, None, "expected at least one judgement, got none")
    return qrels


# ----------------------------------------------------------------------------------------------- BEIR


def load_beir(directory, split: str) -> Dataset:
    """A BEIR directory: the whole corpus, the queries judged in ``qrels/<split>.tsv`` (in
    ``queries.jsonl`` order) and those judgements, checked with ``validate`` (unknown ids raise)."""
    d = Path(directory)
    if not d.is_dir():
        raise DataError(d, None, "expected a BEIR directory (corpus.jsonl, queries.jsonl, qrels/), "
                                 "got no such directory")
    qrels_path = d / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file() and (d / "qrels" / f"{split}.tsv.gz").is_file():
        qrels_path = d / "qrels" / f"{split}.tsv.gz"
    if not qrels_path.is_file():
        splits = sorted(p.name.split(".")[0] for p in (d / "qrels").glob("*.tsv*")) if (d / "qrels").is_dir() else []
        raise DataError(qrels_path, None, f"expected split {split!r} to be one of {splits}")
    corpus = load_corpus(d)
    all_queries = load_queries(d)
    qrels = load_qrels(qrels_path)
    validate(qrels=qrels, queries=all_queries, corpus=corpus)
    queries = Queries((qid, q) for qid, q in all_queries.items() if qid in qrels)
    queries.source, queries.skipped = all_queries.source, dict(all_queries.skipped)
    return Dataset(corpus, queries, qrels)


# ----------------------------------------------------------------------------------------------- runs


def load_run(path) -> Run:
    """A TREC run (``qid Q0 docid rank score tag``, whitespace-separated) -> ``Run`` keeping the scores.

    The rank column must be an integer (it is otherwise ignored: order comes from the scores, as in
    trec_eval); scores must be finite numbers; a (qid, docid) pair may appear once. ``Run.tag`` is the
    first line's tag; lines with another tag are counted in ``skipped["other_tag"]`` (their results are
    kept; only their tag is dropped).
    """
    p = Path(path)
    run = Run()
    run.source = str(p)
    tag = None
    other_tag = 0
    cur_qid = None
    cur: dict = {}
    with _open_text(p) as f, _decoding(p):
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) != 6:
                if not parts:
                    continue
                raise DataError(p, lineno, f"expected 6 columns {_RUN_COLUMNS}, got {len(parts)}: "
                                           f"{_short(line.rstrip())}")
            qid, _, docid, rank, score, t = parts
            if qid != cur_qid:
                cur = run.get(qid)
                if cur is None:
                    cur = run[qid] = {}
                cur_qid = qid
            try:
                s = float(score)
                int(rank)
            except ValueError:
                _bad_run_numbers(p, lineno, rank, score)
            if s - s != 0.0:  # nan or inf
                raise DataError(p, lineno, f"expected a finite score, got {_short(score)}")
            if cur.setdefault(docid, s) is not s:
                first = next(ln for ln, q, d in _iter_run_pairs(p) if q == qid and d == docid)
                raise DataError(p, lineno, f"expected each passage once per query, got ({qid!r}, {docid!r}) "
                                           f"again (first on line {first})")
            if t != tag:
                if tag is None:
                    tag = t
                else:
                    other_tag += 1
    run.tag = tag if tag is not None else run.tag
    _skip(run, "other_tag", other_tag, p)
    return run


def _bad_run_numbers(path, lineno, rank: str, score: str):
    try:
        int(rank)
    except ValueError:
        raise DataError(path, lineno, f"expected an integer rank (column 4), got {_short(rank)}") from None
    raise DataError(path, lineno, f"expected a numeric score (column 5), got {_short(score)}")


def _iter_run_pairs(path) -> Iterator[tuple[int, str, str]]:
    """``(line, qid, docid)`` of each line of a run file (for re-scans; lines were checked on loading)."""
    with _open_text(path) as f, _decoding(path):
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if len(parts) >= 3:
                yield lineno, parts[0], parts[2]


def save_run(run: Mapping[str, Mapping[str, float]], path, tag: str | None = None) -> None:
    """Write a TREC run: per query (in ``run`` order) passages by score descending, ties by doc id
    descending (trec_eval's order, ``Run.ranked``), ranks 1..n. Scores are written with ``repr`` so
    they read back exactly. ``tag`` defaults to ``run.tag`` (or ``"intdistill"``). The file is replaced
    atomically. Ids with whitespace and non-finite scores raise ``ValueError``.
    """
    tag = tag if tag is not None else getattr(run, "tag", None) or "intdistill"
    if not tag or _WHITESPACE.search(tag):
        raise ValueError(f"expected a run tag without whitespace, got {tag!r}")
    by_score = itemgetter(1, 0)
    with _atomic_writer(path) as f:
        for qid, docs in run.items():
            if not isinstance(qid, str) or not qid or _WHITESPACE.search(qid):
                raise ValueError(f"expected query ids to be non-empty strings without whitespace, got {qid!r}")
            if "" in docs or _WHITESPACE.search("".join(docs)):
                bad = next(d for d in docs if not d or _WHITESPACE.search(d))
                raise ValueError(f"query {qid!r}: expected doc ids to be non-empty strings without whitespace, "
                                 f"got {bad!r}")
            items = [(d, float(s)) for d, s in docs.items()]
            bad = None
            if not math.isfinite(sum(s for _, s in items)):  # cheap test first; exact one on overflow
                bad = next(((d, s) for d, s in items if not math.isfinite(s)), None)
            if bad is not None:
                raise ValueError(f"query {qid!r}: expected finite scores, got {bad[1]!r} for doc {bad[0]!r}")
            items.sort(key=by_score, reverse=True)
            prefix = f"{qid} Q0 "
            suffix = f" {tag}\n"
            f.writelines([f"{prefix}{d} {i} {s!r}{suffix}" for i, (d, s) in enumerate(items, 1)])


# ------------------------------------------------------------------------------------------ validation


def _pairs_by_line(path, kind: str) -> Iterator[tuple[int, str, str]] | None:
    """``(line, qid, docid)`` over a qrels or run file, or None when it has no lines (SQuAD JSON, memory)."""
    if path is None or _is_squad(Path(path)) or not Path(path).is_file():
        return None
    if kind == "qrels":
        return ((ln, q, d) for ln, q, d, _ in _iter_qrels(path))
    return _iter_run_pairs(path)


def _unknown_ids(data: Mapping[str, Mapping[str, Any]], path, kind: str, what: str, known: Mapping,
                 target: str) -> None:
    """Raise when ``data`` (qrels or a run) names a query/doc id absent from ``known``."""
    if what == "query id":
        bad = [q for q in data if q not in known]
        is_bad = lambda q, d: q not in known  # noqa: E731
    else:
        known_keys = known.keys() if isinstance(known, Mapping) else known
        bad_q = [q for q, docs in data.items() if not docs.keys() <= known_keys]
        bad = [d for q in bad_q for d in data[q] if d not in known]
        is_bad = lambda q, d: d not in known  # noqa: E731
    if not bad:
        return
    lines = _pairs_by_line(path, kind)
    first_line = None
    first_id = bad[0]
    count = 0
    if lines is not None:
        for ln, q, d in lines:
            if is_bad(q, d):
                if first_line is None:
                    first_line, first_id = ln, (q if what == "query id" else d)
                count += 1
    if first_line is None:  # in memory (or the file no longer matches): count pairs instead of lines
        if what == "query id":
            count = sum(len(data[q]) for q in bad)
        else:
            count = len(bad)
        unit = "(query, passage) pairs"
    else:
        unit = "lines"
    where = path if path is not None else f"<{kind} in memory>"
    raise DataError(where, first_line, f"{count} {unit} name a {what} not in the {target} (first: {first_id!r}); "
                                       f"expected every {what} to be in the {target}")


def validate(qrels: Mapping | None = None, queries: Mapping | None = None, corpus: Mapping | None = None,
             run: Mapping | None = None, *, qrels_path=None, run_path=None) -> ValidationReport:
    """Check that qrels and run name only known queries and passages, and count what they cover.

    Raises ``DataError`` (file, line of the first offence, the id, the number of offending lines) when
    qrels or the run name a query id not in ``queries`` or a doc id not in ``corpus`` (each check runs
    when both sides are given). ``qrels_path``/``run_path`` default to the ``source`` the loaders set; they
    are re-scanned only on error, to find line numbers. Non-fatal findings go into the report (and are
    logged as warnings): see ``ValidationReport``.
    """
    qrels_path = qrels_path if qrels_path is not None else getattr(qrels, "source", None)
    run_path = run_path if run_path is not None else getattr(run, "source", None)
    if qrels is not None:
        if queries is not None:
            _unknown_ids(qrels, qrels_path, "qrels", "query id", queries, "queries")
        if corpus is not None:
            _unknown_ids(qrels, qrels_path, "qrels", "doc id", corpus, "corpus")
    if run is not None:
        if queries is not None:
            _unknown_ids(run, run_path, "run", "query id", queries, "queries")
        if corpus is not None:
            _unknown_ids(run, run_path, "run", "doc id", corpus, "corpus")

    counts: dict[str, Any] = {}
    if queries is not None:
        counts["n_queries"] = len(queries)
    if corpus is not None:
        counts["n_passages"] = len(corpus)
    if qrels is not None:
        counts["n_judged_queries"] = len(qrels)
        counts["n_judgements"] = sum(len(d) for d in qrels.values())
        counts["n_relevant"] = sum(1 for d in qrels.values() for r in d.values() if r > 0)
        counts["judged_without_relevant"] = tuple(q for q, d in qrels.items() if not any(r > 0 for r in d.values()))
        if queries is not None:
            counts["unjudged_queries"] = tuple(q for q in queries if q not in qrels)
    if run is not None:
        counts["n_run_queries"] = len(run)
        counts["n_run_pairs"] = sum(len(d) for d in run.values())
        if qrels is not None:
            counts["judged_missing_from_run"] = tuple(q for q in qrels if not run.get(q))
            counts["run_unjudged_queries"] = tuple(q for q in run if q not in qrels)
    report = ValidationReport(**counts)
    for warning in report.warnings():
        log.warning("%s", warning)
    return report


__all__ = [
    "Corpus", "DataError", "Dataset", "Passage", "Qrels", "Queries", "Query", "Run", "ValidationReport",
    "dump_jsonl", "iter_jsonl", "load_beir", "load_corpus", "load_jsonl", "load_qrels", "load_queries", "load_run",
    "load_squad", "save_run", "validate",
]
