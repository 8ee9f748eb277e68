"""TREC runs (load, save) and cross-file validation of qrels, queries, corpus and runs."""

from __future__ import annotations

import math
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterator, Mapping

from intdistill.data.io import _atomic_writer, _decoding, _open_text, _short, _skip
from intdistill.data.loaders import _is_squad, _iter_qrels
from intdistill.data.records import _RUN_COLUMNS, _WHITESPACE, DataError, Run, ValidationReport, log


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


def save_qrels(qrels: Mapping[str, Mapping[str, int]], path) -> None:
    """Write judgements as BEIR TSV (``query-id<TAB>corpus-id<TAB>score`` header, then one line per judgement,
    in ``qrels`` order), as :func:`load_qrels` reads them; replaced atomically. Ids with whitespace and
    non-integer scores raise ``ValueError``."""
    with _atomic_writer(path) as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in qrels.items():
            for doc, rel in docs.items():
                for what, value in (("query", qid), ("doc", doc)):
                    if not isinstance(value, str) or not value or _WHITESPACE.search(value):
                        raise ValueError(f"expected {what} ids to be non-empty strings without whitespace, "
                                         f"got {value!r}")
                if isinstance(rel, bool) or not isinstance(rel, int):
                    raise ValueError(f"query {qid!r}, doc {doc!r}: expected an integer score, got {rel!r}")
                f.write(f"{qid}\t{doc}\t{rel}\n")


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
