"""Data loading: the real shared data sets, every kind of bad input, and round trips."""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intdistill.data import (
    Corpus,
    DataError,
    Dataset,
    Passage,
    Qrels,
    Queries,
    Query,
    Run,
    ValidationReport,
    dump_jsonl,
    iter_jsonl,
    load_beir,
    load_corpus,
    load_jsonl,
    load_qrels,
    load_queries,
    load_run,
    load_squad,
    save_qrels,
    save_run,
    validate,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SCIFACT = DATA / "scifact"
SQUAD = DATA / "squad-dev" / "dev-v1.1.part.json"


@pytest.fixture(scope="session")
def scifact_dir() -> Path:
    assert (SCIFACT / "corpus.jsonl").is_file(), f"shared data missing: {SCIFACT}"
    return SCIFACT


@pytest.fixture(scope="session")
def squad_path() -> Path:
    assert SQUAD.is_file(), f"shared data missing: {SQUAD}"
    return SQUAD


@pytest.fixture(scope="session")
def squad(squad_path) -> Dataset:
    return load_squad(squad_path)


# --------------------------------------------------------------------------------------- real data


def test_scifact_corpus_and_queries(scifact_dir):
    corpus = load_corpus(scifact_dir)
    assert isinstance(corpus, Corpus) and len(corpus) == 5183
    assert corpus.source.endswith("corpus.jsonl") and corpus.skipped == {}
    first = next(iter(corpus.values()))
    assert first == corpus["4983"]
    assert first.title.startswith("Microstructural development of human newborn cerebral white matter")
    assert first.text.startswith("Alterations of the architecture of cerebral white matter")
    queries = load_queries(scifact_dir / "queries.jsonl")
    assert len(queries) == 1109
    assert queries["0"] == Query("0", "0-dimensional biomaterials lack inductive properties.", ())


@pytest.mark.parametrize("split, n_queries, n_judgements", [("train", 809, 919), ("test", 300, 339)])
def test_scifact_splits(scifact_dir, split, n_queries, n_judgements):
    ds = load_beir(scifact_dir, split)
    assert len(ds.corpus) == 5183
    assert len(ds.queries) == len(ds.qrels) == n_queries
    assert ds.qrels.n_judgements() == n_judgements
    assert set(ds.queries) == set(ds.qrels)
    assert ds.skipped == {}
    # The same file loaded alone gives the same judgements (train.tsv is CRLF: the ids must not keep a \r).
    alone = load_qrels(scifact_dir / "qrels" / f"{split}.tsv")
    assert alone == ds.qrels
    assert all("\r" not in d for docs in alone.values() for d in docs)


def test_scifact_train_qrels_really_are_crlf(scifact_dir):
    raw = (scifact_dir / "qrels" / "train.tsv").read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n") == 920  # header + 919 judgements
    assert load_qrels(scifact_dir / "qrels" / "train.tsv")["0"] == {"31715818": 1}


def test_scifact_validation_report(scifact_dir):
    corpus, queries = load_corpus(scifact_dir), load_queries(scifact_dir)
    qrels = load_qrels(scifact_dir / "qrels" / "test.tsv")
    report = validate(qrels=qrels, queries=queries, corpus=corpus)
    assert (report.n_queries, report.n_passages, report.n_judged_queries, report.n_judgements) == (1109, 5183, 300, 339)
    assert len(report.unjudged_queries) == 809 and report.judged_without_relevant == ()
    assert report.warnings() == []


def test_squad_counts_and_ids(squad):
    assert len(squad.corpus) == 1458 and len(squad.queries) == 7672 and squad.qrels.n_judgements() == 7672
    p = squad.corpus["Super_Bowl_50#0"]
    assert p.title == "Super Bowl 50" and p.text.startswith("Super Bowl 50 was an American football game")
    q = squad.queries["56be4db0acb8001400a502ec"]
    # Three annotators gave "Denver Broncos": de-duplicated keeping order.
    assert q == Query(q.id, "Which NFL team represented the AFC at Super Bowl 50?", ("Denver Broncos",))
    assert squad.qrels[q.id] == {"Super_Bowl_50#0": 1}
    assert squad.skipped == {}


def test_squad_qrels_point_at_the_source_paragraph(squad, squad_path):
    # SQuAD answers are spans of their own paragraph, so each gold passage contains every answer.
    for qid, query in squad.queries.items():
        (pid,) = squad.qrels[qid]
        assert all(a in squad.corpus[pid].text for a in query.answers), qid
    raw = json.loads(squad_path.read_text(encoding="utf-8"))
    article = raw["data"][3]
    pid = f"{article['title']}#2"
    assert squad.corpus[pid].text == article["paragraphs"][2]["context"]
    # The single loaders agree with load_squad.
    assert load_corpus(squad_path) == squad.corpus
    assert load_queries(squad_path) == squad.queries
    assert load_qrels(squad_path) == squad.qrels
    assert validate(qrels=squad.qrels, queries=squad.queries, corpus=squad.corpus).n_relevant == 7672


# --------------------------------------------------------------------------------------- bad input


def _write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def _expect_error(fn, path: Path, line: int | None, *fragments: str) -> DataError:
    with pytest.raises(DataError) as info:
        fn(path)
    err = info.value
    msg = str(err)
    assert path.name in msg, msg
    assert err.line == line, msg
    if line is not None:
        assert f"{path.name}:{line}:" in msg, msg
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return err


GOOD_DOC = '{"_id": "d1", "title": "T", "text": "some text"}\n'

CORPUS_CASES = [
    ("invalid-json", GOOD_DOC + '{"_id": "d2", "text": }\n', 2, ["expected a JSON object, got invalid JSON"]),
    ("array", GOOD_DOC + '["d2", "text"]\n', 2, ["expected a JSON object, got array"]),
    ("no-id", GOOD_DOC + '{"title": "x", "text": "t"}\n', 2, ["expected a field '_id' or 'id'", "['text', 'title']"]),
    ("no-text", GOOD_DOC + '{"_id": "d2", "body": "t"}\n', 2, ["expected a string field 'text'", "['_id', 'body']"]),
    ("text-int", GOOD_DOC + '{"_id": "d2", "text": 5}\n', 2, ["expected 'text' to be a string, got integer 5"]),
    ("title-list", GOOD_DOC + '{"_id": "d2", "title": ["a"], "text": "t"}\n', 2,
     ["expected 'title' to be a string, got array"]),
    ("id-float", GOOD_DOC + '{"_id": 2.5, "text": "t"}\n', 2, ["expected '_id' to be a string, got number 2.5"]),
    ("id-space", GOOD_DOC + '{"id": "d 2", "text": "t"}\n', 2, ["without whitespace", "'d 2'"]),
    ("id-empty", GOOD_DOC + '{"id": "", "text": "t"}\n', 2, ["non-empty"]),
    ("ids-disagree", GOOD_DOC + '{"_id": "a", "id": "b", "text": "t"}\n', 2, ["expected '_id' and 'id' to agree"]),
    ("duplicate", GOOD_DOC + "\n" + '{"_id": "d2", "text": "t"}\n' + '{"id": "d1", "text": "u"}\n', 4,
     ["expected unique passage ids", "'d1' again (first on line 1)"]),
    ("empty-text", GOOD_DOC + '{"_id": "d2", "title": "T", "text": "  "}\n', 2,
     ["expected a non-empty 'text' for passage 'd2'"]),
    ("empty-file", "\n\n", None, ["expected at least one passage, got none"]),
]


@pytest.mark.parametrize("name, content, line, fragments", CORPUS_CASES, ids=[c[0] for c in CORPUS_CASES])
def test_corpus_bad_input(tmp_path, name, content, line, fragments):
    _expect_error(load_corpus, _write(tmp_path, f"{name}.jsonl", content), line, *fragments)


def test_undecodable_bytes_name_line_and_offset(tmp_path):
    content = GOOD_DOC.encode() + b'{"_id": "d2", "text": "caf\xe9"}\n'
    path = _write(tmp_path, "latin1.jsonl", content)
    offset = len(GOOD_DOC.encode()) + len(b'{"_id": "d2", "text": "caf')
    _expect_error(load_corpus, path, 2, "expected UTF-8 text", "byte 0xe9", f"byte offset {offset}")
    # Far from the start of the file (past the text reader's block size) the line is still right.
    lines = b"".join(GOOD_DOC.replace("d1", f"d{i}").encode() for i in range(3000))
    prefix = b'{"_id": "x", "text": "'
    path = _write(tmp_path, "late.jsonl", lines + prefix + b'\xff"}\n')
    _expect_error(load_corpus, path, 3001, "byte 0xff", f"byte offset {len(lines) + len(prefix)}")
    prefix = b"q1 Q0 d1 1 2.0 t\nq1 Q0 d"
    path = _write(tmp_path, "run.trec", prefix + b"\x80 2 1.0 t\n")
    _expect_error(load_run, path, 2, "byte 0x80", f"byte offset {len(prefix)}")
    prefix = b"q1 0 d1 1\r\nq1 0 "
    path = _write(tmp_path, "qrels.txt", prefix + b"\xc3\x28 1\r\n")
    _expect_error(load_qrels, path, 2, "byte 0xc3", f"byte offset {len(prefix)}")


def test_skip_empty_passages_is_counted(tmp_path, caplog):
    path = _write(tmp_path, "c.jsonl", GOOD_DOC + '{"_id": "d2", "title": "only a title", "text": ""}\n'
                  + '{"id": 3, "text": "three"}\n')
    with caplog.at_level(logging.WARNING, logger="intdistill.data"):
        corpus = load_corpus(path, skip_empty=True)
    assert list(corpus) == ["d1", "3"] and corpus.skipped == {"empty_text": 1}
    assert "skipped 1 (empty text)" in caplog.text
    assert corpus["3"] == Passage("3", "three", "")
    assert corpus["d1"].full_text() == "T some text" and corpus["3"].full_text() == "three"


GOOD_QUERY = '{"_id": "q1", "text": "what?"}\n'

QUERY_CASES = [
    ("no-text", GOOD_QUERY + '{"_id": "q2", "query": "x"}\n', 2, ["expected a string field 'text' or 'question'"]),
    ("text-null", GOOD_QUERY + '{"_id": "q2", "text": null}\n', 2, ["expected 'text' to be a string, got null"]),
    ("both-differ", GOOD_QUERY + '{"_id": "q2", "text": "a", "question": "b"}\n', 2, ["expected at most one of"]),
    ("empty-text", GOOD_QUERY + '{"_id": "q2", "question": ""}\n', 2, ["expected a non-empty query text for 'q2'"]),
    ("answers-str", GOOD_QUERY + '{"_id": "q2", "text": "a", "answers": "x"}\n', 2,
     ["expected 'answers' to be a list of non-empty strings, got string"]),
    ("answers-int", GOOD_QUERY + '{"_id": "q2", "text": "a", "answers": ["x", 3]}\n', 2,
     ["expected 'answers' to be a list of non-empty strings, got array"]),
    ("answers-empty-str", GOOD_QUERY + '{"_id": "q2", "text": "a", "answers": [""]}\n', 2, ["non-empty strings"]),
    ("duplicate", GOOD_QUERY * 2, 2, ["expected unique query ids", "'q1' again (first on line 1)"]),
    ("bool-id", GOOD_QUERY + '{"_id": true, "text": "a"}\n', 2, ["expected '_id' to be a string, got boolean true"]),
    ("truncated", GOOD_QUERY + '{"_id": "q2", "text": "a"', 2, ["invalid JSON"]),
]


@pytest.mark.parametrize("name, content, line, fragments", QUERY_CASES, ids=[c[0] for c in QUERY_CASES])
def test_queries_bad_input(tmp_path, name, content, line, fragments):
    _expect_error(load_queries, _write(tmp_path, f"{name}.jsonl", content), line, *fragments)


def test_queries_jsonl_fields(tmp_path):
    path = _write(tmp_path, "q.jsonl", '\ufeff{"id": 7, "question": "who?", "answers": ["A", "B", "A"], "x": 1}\r\n'
                  '{"_id": "q2", "text": "why?", "answers": null}\r\n')
    queries = load_queries(path)
    assert isinstance(queries, Queries)
    assert queries == {"7": Query("7", "who?", ("A", "B")), "q2": Query("q2", "why?", ())}


QRELS_CASES = [
    ("rel-float-trec", "q1 0 d1 1\nq1 0 d2 1.5\n", 2, ["expected an integer relevance, got '1.5'"]),
    ("rel-word-beir", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\thigh\n", 3,
     ["expected an integer relevance, got 'high'"]),
    ("rel-float-beir-first-line", "q1\td1\t0.5\n", 1, ["expected an integer relevance, got '0.5'"]),
    ("five-columns", "q1 0 d1 1 extra\n", 1, ["expected 'query-id corpus-id score' (BEIR TSV) or 'qid iter docid rel'",
                                               "got 5 columns"]),
    ("mixed-columns", "q1 0 d1 1\n\nq1 d2 1\n", 3, ["expected 4 columns 'qid iter docid rel' (TREC qrels) as on line 1",
                                                     "got 3"]),
    ("conflict", "q1\td1\t1\r\nq1\td2\t0\r\nq1\td1\t2\r\n", 3,
     ["expected one relevance per (query, passage), got 2 for ('q1', 'd1') and 1 on line 1"]),
    ("header-only", "query-id\tcorpus-id\tscore\n", None, ["expected at least one judgement, got none"]),
]


@pytest.mark.parametrize("name, content, line, fragments", QRELS_CASES, ids=[c[0] for c in QRELS_CASES])
def test_qrels_bad_input(tmp_path, name, content, line, fragments):
    _expect_error(load_qrels, _write(tmp_path, f"{name}.tsv", content), line, *fragments)


def test_qrels_repeated_identical_judgement_is_counted(tmp_path, caplog):
    path = _write(tmp_path, "r.txt", "q1 0 d1 1\nq1 0 d2 -1\nq1 Q0 d1 1\n")
    with caplog.at_level(logging.WARNING, logger="intdistill.data"):
        qrels = load_qrels(path)
    assert qrels == {"q1": {"d1": 1, "d2": -1}} and qrels.skipped == {"repeated_judgement": 1}
    assert qrels.n_judgements() == 2 and "r.txt: skipped 1 (repeated judgement)" in caplog.text


RUN_CASES = [
    ("columns", "q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 1.0\n", 2, ["expected 6 columns 'qid Q0 docid rank score tag', got 5"]),
    ("score", "q1 Q0 d1 1 2.0 t\n\nq1 Q0 d2 2 high t\n", 3, ["expected a numeric score (column 5), got 'high'"]),
    ("rank", "q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2.0 1.0 t\n", 2, ["expected an integer rank (column 4), got '2.0'"]),
    ("nan", "q1 Q0 d1 1 2.0 t\nq1 Q0 d2 2 nan t\n", 2, ["expected a finite score, got 'nan'"]),
    ("inf", "q1 Q0 d1 1 -inf t\n", 1, ["expected a finite score, got '-inf'"]),
    ("duplicate", "q1 Q0 d1 1 2.0 t\nq2 Q0 d1 1 2.0 t\nq1 Q0 d1 2 1.0 t\n", 3,
     ["expected each passage once per query, got ('q1', 'd1') again (first on line 1)"]),
]


@pytest.mark.parametrize("name, content, line, fragments", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_run_bad_input(tmp_path, name, content, line, fragments):
    _expect_error(load_run, _write(tmp_path, f"{name}.trec", content), line, *fragments)


def test_run_tags_and_blank_lines(tmp_path, caplog):
    path = _write(tmp_path, "r.trec", "\nq1 Q0 d1 1 2.5 bm25\r\nq1 Q0 d2 2 1 bm25\r\nq2 Q0 d1 1 -3e-2 other\r\n\r\n")
    with caplog.at_level(logging.WARNING, logger="intdistill.data"):
        run = load_run(path)
    assert run == {"q1": {"d1": 2.5, "d2": 1.0}, "q2": {"d1": -0.03}}
    assert run.tag == "bm25" and run.skipped == {"other_tag": 1} and "other tag" in caplog.text
    assert run.ranked("q1") == ["d1", "d2"] and run.n_pairs() == 3
    assert load_run(_write(tmp_path, "empty.trec", "")) == {}


def _squad_json(questions: list[dict], title: str = "An_Article") -> str:
    return json.dumps({"version": "1.1", "data": [{"title": title, "paragraphs": [
        {"context": "First paragraph about cats.", "qas": []},
        {"context": "Second paragraph about dogs.", "qas": questions}]}]})


SQUAD_CASES = [
    ("invalid", '{"data": [\n  {"title": "x",\n   }]}', 3, ["expected SQuAD JSON, got invalid JSON"]),
    ("no-data", '{"version": "1.1"}', None, ["expected a SQuAD JSON object with a 'data' list"]),
    ("question-null", _squad_json([{"id": "a", "question": None, "answers": []}]), None,
     ["data[0].paragraphs[1].qas[0].question: expected string, got null"]),
    ("no-id", _squad_json([{"question": "q?", "answers": []}]), None,
     ["data[0].paragraphs[1].qas[0]: expected a field 'id'"]),
    ("duplicate-qid", _squad_json([{"id": "a", "question": "q?", "answers": [{"text": "dogs"}]}] * 2), None,
     ["data[0].paragraphs[1].qas[1].id: expected unique question ids, got 'a' twice"]),
    ("answer-text-int", _squad_json([{"id": "a", "question": "q?", "answers": [{"text": 4}]}]), None,
     ["data[0].paragraphs[1].qas[0].answers[0].text: expected string, got integer 4"]),
    ("title-space", _squad_json([], title="An Article"), None, ["data[0].title", "without whitespace"]),
]


@pytest.mark.parametrize("name, content, line, fragments", SQUAD_CASES, ids=[c[0] for c in SQUAD_CASES])
def test_squad_bad_input(tmp_path, name, content, line, fragments):
    _expect_error(load_squad, _write(tmp_path, f"{name}.json", content), line, *fragments)


def test_squad_unanswerable_questions_are_counted(tmp_path, caplog):
    path = _write(tmp_path, "v2.json", _squad_json([
        {"id": "a", "question": "Which animal?", "answers": [{"text": "dogs", "answer_start": 22}] * 2},
        {"id": "b", "question": "Which colour?", "answers": [], "is_impossible": True}]))
    with caplog.at_level(logging.WARNING, logger="intdistill.data"):
        ds = load_squad(path)
    assert list(ds.corpus) == ["An_Article#0", "An_Article#1"]
    assert ds.corpus["An_Article#1"] == Passage("An_Article#1", "Second paragraph about dogs.", "An Article")
    assert ds.queries == {"a": Query("a", "Which animal?", ("dogs",))}
    assert ds.qrels == {"a": {"An_Article#1": 1}}
    assert ds.skipped == {"queries.no_answer": 1, "qrels.no_answer": 1}
    assert "skipped 1 (no answer)" in caplog.text


def test_load_jsonl_errors_and_round_trip(tmp_path):
    @dataclass(frozen=True)
    class Label:
        qid: str
        cands: list
        output: str

    path = tmp_path / "labels.jsonl"
    records = [Label("q1", ["d1", "d2"], "[2] > [1]"), {"qid": "q2", "note": "ünïcode ✓"}, Query("q3", "t", ("a",))]
    assert dump_jsonl(records, path) == 3
    assert load_jsonl(path) == [{"qid": "q1", "cands": ["d1", "d2"], "output": "[2] > [1]"},
                                {"qid": "q2", "note": "ünïcode ✓"}, {"id": "q3", "text": "t", "answers": ["a"]}]
    assert "ünïcode" in path.read_text(encoding="utf-8")
    dump_jsonl([{"qid": "q4"}], path, append=True)
    assert [ln for ln, _ in iter_jsonl(path)] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"record 1: expected JSON-serialisable values"):
        dump_jsonl([{"a": 1}, {"a": math.nan}], tmp_path / "nan.jsonl")
    assert not (tmp_path / "nan.jsonl").exists() and not list(tmp_path.glob("nan.jsonl.tmp*"))
    with pytest.raises(ValueError, match=r"record 0: expected a mapping"):
        dump_jsonl([[1, 2]], tmp_path / "list.jsonl")
    _expect_error(load_jsonl, _write(tmp_path, "bad.jsonl", '{"a": 1}\n\n{"a": 2,}\n'), 3, "invalid JSON")
    _expect_error(load_jsonl, _write(tmp_path, "num.jsonl", "3\n"), 1, "expected a JSON object, got integer 3")


def test_gzip_and_bom_are_transparent(tmp_path):
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\ufeff" + GOOD_DOC)
    assert load_corpus(path) == {"d1": Passage("d1", "some text", "T")}
    run = Run({"q1": {"d1": 1.0, "d2": 0.5}}, tag="x")
    save_run(run, tmp_path / "run.trec.gz")
    assert gzip.decompress((tmp_path / "run.trec.gz").read_bytes()).startswith(b"q1 Q0 d1 1 1.0 x\n")
    assert load_run(tmp_path / "run.trec.gz") == run
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(GOOD_DOC.encode() + b'{"_id": "d2", "text": "\xff"}\n'))
    _expect_error(load_corpus, bad, 2, "byte 0xff", "decompressed")


# -------------------------------------------------------------------------------------- validation


def _corpus(*ids: str) -> dict:
    return {i: Passage(i, f"text {i}") for i in ids}


def _queries(*ids: str) -> dict:
    return {i: Query(i, f"query {i}") for i in ids}


def test_validate_unknown_ids_in_files(tmp_path):
    qrels_path = _write(tmp_path, "qrels.tsv",
                        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\nq1\td2\t0\nq9\td2\t1\n")
    qrels = load_qrels(qrels_path)
    err = _expect_error(lambda p: validate(qrels=qrels, queries=_queries("q1")), qrels_path, 3,
                        "2 lines name a query id not in the queries (first: 'q9')")
    assert err.reason.startswith("2 lines")
    # Doc ids: the offending lines are counted across queries.
    _expect_error(lambda p: validate(qrels=qrels, corpus=_corpus("d1")), qrels_path, 4,
                  "2 lines name a doc id not in the corpus (first: 'd2')")
    run_path = _write(tmp_path, "run.trec", "q1 Q0 d1 1 3 t\nq1 Q0 dX 2 2 t\nq1 Q0 d2 3 1 t\nq2 Q0 dX 1 1 t\n")
    run = load_run(run_path)
    _expect_error(lambda p: validate(run=run, corpus=_corpus("d1", "d2")), run_path, 2,
                  "2 lines name a doc id not in the corpus (first: 'dX')")
    _expect_error(lambda p: validate(run=run, queries=_queries("q1")), run_path, 4,
                  "1 lines name a query id not in the queries (first: 'q2')")
    # An explicit path wins over the loader's source.
    other = _write(tmp_path, "copy.trec", run_path.read_text())
    _expect_error(lambda p: validate(run=dict(run), corpus=_corpus("d1", "d2"), run_path=other), other, 2, "'dX'")


def test_validate_in_memory_and_report():
    with pytest.raises(DataError, match=r"<qrels in memory>: 2 \(query, passage\) pairs name a query id not in "
                                        r"the queries \(first: 'q2'\)"):
        validate(qrels=Qrels({"q1": {"d1": 1}, "q2": {"d1": 1, "d2": 0}, "q3": {"d1": 1}}),
                 queries=_queries("q1", "q3"))
    with pytest.raises(DataError, match=r"<run in memory>: 1 \(query, passage\) pairs name a doc id"):
        validate(run={"q1": {"d1": 1.0, "d7": 0.5}}, corpus=_corpus("d1"))
    qrels = Qrels({"q1": {"d1": 1, "d2": 0}, "q2": {"d2": 0}, "q3": {"d3": 2}})
    run = Run({"q1": {"d1": 0.3, "d3": 0.1}, "q4": {"d2": 1.0}})
    report = validate(qrels=qrels, queries=_queries("q1", "q2", "q3", "q4", "q5"), corpus=_corpus("d1", "d2", "d3"),
                      run=run)
    assert report == ValidationReport(n_queries=5, n_passages=3, n_judged_queries=3, n_judgements=4, n_relevant=2,
                                      n_run_queries=2, n_run_pairs=3, unjudged_queries=("q4", "q5"),
                                      judged_without_relevant=("q2",), judged_missing_from_run=("q2", "q3"),
                                      run_unjudged_queries=("q4",))
    assert len(report.warnings()) == 2 and "no relevant passage" in report.warnings()[0]
    assert validate() == ValidationReport()


def test_load_beir_checks_ids_and_names_splits(tmp_path):
    d = tmp_path / "beir"
    (d / "qrels").mkdir(parents=True)
    (d / "corpus.jsonl").write_text(GOOD_DOC + '{"_id": "d2", "text": "two"}\n')
    (d / "queries.jsonl").write_text(GOOD_QUERY + '{"_id": "q2", "text": "two?"}\n{"_id": "q3", "text": "3?"}\n')
    (d / "qrels" / "test.tsv").write_text("q3\td2\t1\nq1\td1\t1\n")
    (d / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq2\td1\t1\nq2\td9\t1\n")
    ds = load_beir(d, "test")
    assert list(ds.queries) == ["q1", "q3"] and ds.qrels == {"q3": {"d2": 1}, "q1": {"d1": 1}}
    with pytest.raises(DataError, match=r"dev.tsv:3: 1 lines name a doc id not in the corpus \(first: 'd9'\)"):
        load_beir(d, "dev")
    with pytest.raises(DataError, match=r"train.tsv: expected split 'train' to be one of \['dev', 'test'\]"):
        load_beir(d, "train")
    with pytest.raises(DataError, match=r"expected a BEIR directory with corpus.jsonl"):
        load_corpus(d / "qrels")


# ------------------------------------------------------------------------------------- round trips

_ID = st.text(alphabet=st.sampled_from("abcXYZ019_-.#:/é"), min_size=1, max_size=6)
_SCORE = st.one_of(st.sampled_from([0.0, 1.0, -1.0, 0.5]),
                   st.floats(allow_nan=False, allow_infinity=False, width=64),
                   st.floats(-1e3, 1e3, allow_nan=False, width=32))
_RUNS = st.dictionaries(_ID, st.dictionaries(_ID, _SCORE, min_size=1, max_size=12), max_size=6)


@settings(max_examples=200, deadline=None)
@given(run_dict=_RUNS, tag=st.one_of(st.none(), st.sampled_from(["bm25", "x-1"])))
def test_run_round_trip(tmp_path_factory, run_dict, tag):
    path = tmp_path_factory.mktemp("run") / "run.trec"
    run = Run(run_dict, tag="orig")
    save_run(run, path, tag=tag)
    loaded = load_run(path)
    assert loaded == run_dict
    assert loaded.tag == (tag or "orig") or not run_dict
    rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == sum(len(d) for d in run_dict.values())
    for qid, docs in run_dict.items():
        mine = [r for r in rows if r[0] == qid]
        assert [int(r[3]) for r in mine] == list(range(1, len(docs) + 1))
        assert {r[1] for r in mine} == {"Q0"}
        # Written order: score descending, ties by doc id descending (trec_eval's order).
        expected = sorted(sorted(docs, reverse=True), key=lambda d: -docs[d])  # stable: ties keep id-descending
        assert [r[2] for r in mine] == expected == loaded.ranked(qid)


def test_save_run_ties_numpy_and_bad_values(tmp_path):
    run = {"q1": {"a": np.float32(0.5), "c": np.float32(0.5), "b": np.float64(2.0), "d": 0.5}}
    path = tmp_path / "r.trec"
    save_run(run, path)
    assert path.read_text() == ("q1 Q0 b 1 2.0 intdistill\nq1 Q0 d 2 0.5 intdistill\n"
                                "q1 Q0 c 3 0.5 intdistill\nq1 Q0 a 4 0.5 intdistill\n")
    with pytest.raises(ValueError, match=r"expected finite scores, got nan for doc 'x'"):
        save_run({"q1": {"y": 1.0, "x": float("nan")}}, path)
    with pytest.raises(ValueError, match=r"expected doc ids to be non-empty strings without whitespace, got 'a b'"):
        save_run({"q1": {"ok": 1.0, "a b": 1.0}}, path)
    with pytest.raises(ValueError, match=r"expected query ids .* got 'q 1'"):
        save_run({"q 1": {"d": 1.0}}, path)
    with pytest.raises(ValueError, match=r"expected a run tag without whitespace, got 'my tag'"):
        save_run(run, path, tag="my tag")
    assert load_run(path) == {"q1": {"a": 0.5, "c": 0.5, "b": 2.0, "d": 0.5}}  # the failed saves left it alone
    assert [p.name for p in tmp_path.iterdir()] == ["r.trec"]


_QRELS = st.dictionaries(_ID, st.dictionaries(_ID, st.integers(-2, 3), min_size=1, max_size=5), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(qrels=_QRELS, fmt=st.sampled_from(["trec", "beir", "beir-header"]), newline=st.sampled_from(["\n", "\r\n"]),
       blank=st.booleans())
def test_qrels_formats_round_trip(tmp_path_factory, qrels, fmt, newline, blank):
    lines = ["query-id\tcorpus-id\tscore"] if fmt == "beir-header" else []
    for qid, docs in qrels.items():
        for docid, rel in docs.items():
            lines.append(f"{qid} 0 {docid} {rel}" if fmt == "trec" else f"{qid}\t{docid}\t{rel}")
            if blank:
                lines.append("")
    path = tmp_path_factory.mktemp("qrels") / "qrels.txt"
    path.write_bytes(newline.join(lines).encode("utf-8") + newline.encode())
    loaded = load_qrels(path)
    assert loaded == qrels and loaded.skipped == {}
    assert all(isinstance(r, int) for docs in loaded.values() for r in docs.values())


def test_error_messages_are_exact(tmp_path):
    """One full message per family, to pin the format ``<path>:<line>: <expected ..., got ...>``."""
    path = _write(tmp_path, "r.trec", "q1 Q0 d1 1 x t\n")
    with pytest.raises(DataError) as info:
        load_run(path)
    assert str(info.value) == f"{path}:1: expected a numeric score (column 5), got 'x'"
    assert (info.value.path, info.value.line) == (str(path), 1)
    path = _write(tmp_path, "q.tsv", "q1 0 d1 yes\n")
    with pytest.raises(DataError) as info:
        load_qrels(path)
    assert str(info.value) == f"{path}:1: expected an integer relevance, got 'yes'"
    assert re.fullmatch(r".*c\.jsonl:1: expected a JSON object, got invalid JSON \(.* at column \d+\)",
                        str(pytest.raises(DataError, load_corpus, _write(tmp_path, "c.jsonl", "{x}\n")).value))


def test_the_squad_mini_fixture_is_what_its_script_makes(shared_data_dir, tmp_path):
    # examples/squad-mini is committed; the script must still make it byte for byte, qrels (own paragraphs) included
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "squad-mini"
    subprocess.run([sys.executable, str(root / "scripts" / "make_squad_fixture.py"), "--squad",
                    str(shared_data_dir / "squad-dev" / "dev-v1.1.part.json"), "--out", str(out)],
                   check=True, capture_output=True)
    made = sorted(p.name for p in out.iterdir())
    assert made == ["README.md", "corpus.jsonl", "test-qrels.tsv", "test-queries.jsonl", "train-qrels.tsv",
                    "train-queries.jsonl"]
    for name in made:
        assert (out / name).read_bytes() == (root / "examples" / "squad-mini" / name).read_bytes(), name
    qrels = load_qrels(out / "train-qrels.tsv")
    queries = [json.loads(line) for line in (out / "train-queries.jsonl").read_text().splitlines()]
    assert len(qrels) == len(queries) == 300 and all(len(qrels[q["_id"]]) == 1 for q in queries)
    corpus = load_corpus(out / "corpus.jsonl")
    # a question's own paragraph contains (one of) its answers
    assert all(any(a in corpus[next(iter(qrels[q["_id"]]))].text for a in q["answers"]) for q in queries)


def test_squad_fixture_extra_questions_are_neither_train_nor_test(shared_data_dir, tmp_path):
    """--n-extra writes the next questions of the same shuffle (unlabelled stage-2 questions) and leaves the
    train and test splits exactly as without it; asking for more questions than there are is a clear error."""
    root = Path(__file__).resolve().parents[1]
    script = [sys.executable, str(root / "scripts" / "make_squad_fixture.py"), "--squad",
              str(shared_data_dir / "squad-dev" / "dev-v1.1.part.json")]
    subprocess.run([*script, "--out", str(tmp_path / "x"), "--n-extra", "40"], check=True, capture_output=True)
    for name in ("train-queries.jsonl", "test-queries.jsonl", "corpus.jsonl"):
        assert (tmp_path / "x" / name).read_bytes() == (root / "examples" / "squad-mini" / name).read_bytes(), name

    def ids(name):
        return [json.loads(line)["_id"] for line in (tmp_path / "x" / name).read_text().splitlines()]

    extra = ids("extra-queries.jsonl")
    assert len(extra) == len(set(extra)) == 40
    assert not set(extra) & (set(ids("train-queries.jsonl")) | set(ids("test-queries.jsonl")))
    bad = subprocess.run([*script, "--out", str(tmp_path / "y"), "--n-extra", "100000"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--n-extra 100000" in bad.stderr and "expected at most" in bad.stderr
    assert not (tmp_path / "y").exists()


def test_save_qrels_writes_beir_tsv_that_loads_back(tmp_path):
    path = tmp_path / "qrels.tsv"
    save_qrels({"q1": {"d1": 1, "d2": 0}, "q2": {"d9": 2}}, path)
    assert path.read_text() == "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td9\t2\n"
    assert load_qrels(path) == {"q1": {"d1": 1, "d2": 0}, "q2": {"d9": 2}}


@pytest.mark.parametrize("qrels, expected", [
    ({"q 1": {"d1": 1}}, "query ids"),
    ({"q1": {"": 1}}, "doc ids"),
    ({"q1": {"d1": 1.5}}, "integer score, got 1.5"),
    ({"q1": {"d1": True}}, "integer score, got True"),
])
def test_save_qrels_refuses_what_would_not_load_back_and_keeps_the_old_file(tmp_path, qrels, expected):
    path = tmp_path / "qrels.tsv"
    save_qrels({"q0": {"d0": 1}}, path)
    with pytest.raises(ValueError, match=expected):
        save_qrels(qrels, path)
    assert load_qrels(path) == {"q0": {"d0": 1}}
