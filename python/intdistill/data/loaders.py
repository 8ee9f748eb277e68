"""Loading corpora, queries, generated-query sources, SQuAD, qrels and BEIR directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

from intdistill.data.io import (_JSON_TYPES, _check_id, _decoding, _dedupe, _describe, _get_id, _get_str,
                                _open_text, _short, _skip, iter_jsonl)
from intdistill.data.records import _QRELS_COLUMNS, Corpus, DataError, Dataset, Passage, Qrels, Queries, Query


from intdistill.loaded import shared_load

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
    from intdistill.data.runs import validate  # (runs reads qrels with this module's parser)

    validate(qrels=qrels, queries=all_queries, corpus=corpus)
    queries = Queries((qid, q) for qid, q in all_queries.items() if qid in qrels)
    queries.source, queries.skipped = all_queries.source, dict(all_queries.skipped)
    return Dataset(corpus, queries, qrels)
