"""Queries written by the LLM from the corpus (issue 14): parsing and filters by hand, the sampler, the
command against the fake endpoint (resumable, counted, bad output dropped never crashing), source-first lists,
and the TSV / ir_datasets corpus formats."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_openai  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402

from intdistill import cli, data  # noqa: E402
from intdistill.data import DataError, Passage  # noqa: E402
from intdistill.llm.generate import (  # noqa: E402
    Generated,
    _copied,
    filter_queries,
    generation_messages,
    journal_path,
    parse_query,
    qrels_path,
    sample_passages,
)
from intdistill.train.sources import build_lists  # noqa: E402


def test_parse_query_hand_cases():
    assert parse_query("<think>the passage is about x</think>\nSure! Here is a question:\nQuestion: what is x?") == \
        "what is x?"
    assert parse_query('"where do herons nest"') == "where do herons nest"
    assert parse_query("1. How tall is it?\n2. Who built it?") == "How tall is it?"
    assert parse_query("Q: does insulin lower glucose") == "does insulin lower glucose"
    assert parse_query("") == "" and parse_query("   \n\n") == "" and parse_query("<think>only thinking") == ""
    assert parse_query("Here is a question:") == ""  # chatter alone


def test_copied_from_the_passage():
    passage = "The Golden Gate Bridge was finished in 1937 after four years of work on the strait."
    assert _copied("The Golden Gate Bridge was finished in 1937", passage)
    assert _copied("golden gate bridge was finished in 1937 after four years", passage)
    assert not _copied("when was the golden gate bridge finished", passage)
    assert not _copied("how long did building the bridge take", passage)


def test_unrelated_to_the_passage():
    from intdistill.llm.generate import _unrelated

    passage = "Hydroxyethyl starch solutions were given to cardiac surgery patients; bleeding increased."
    assert _unrelated("What is the main span of the bridge?", passage)  # a question about a few-shot example
    assert not _unrelated("Does hydroxyethyl starch increase bleeding after heart surgery?", passage)
    assert not _unrelated("what is it?", passage)  # no content word at all: not judged here


def test_filter_counts():
    corpus = {f"p{i}": Passage(f"p{i}", f"passage number {i} about the river delta and its many birds") for i in range(6)}
    gen = [Generated("p0", "", ""), Generated("p1", "x", "what " * 40), Generated("p2", "x", "passage number 2 about the river delta"),
           Generated("p3", "x", "which birds live in the delta?"), Generated("p4", "x", "Which birds live in the delta"),
           Generated("p5", "x", "how big is the delta?")]
    kept, why, rep = filter_queries(gen, corpus, max_words=32)
    assert [g.source for g in kept] == ["p3", "p5"]
    assert why == {"p0": "empty", "p1": "overlong", "p2": "copied", "p4": "duplicate"}
    assert (rep.generated, rep.kept) == (6, 2) and rep.dropped["duplicate"] == 1
    kept, why, rep = filter_queries(gen, corpus, round_trip=lambda qs: [["p3"], ["p1"]], round_trip_k=1)
    assert [g.source for g in kept] == ["p3"] and why["p5"] == "round_trip" and rep.dropped["round_trip"] == 1
    assert "round trip: source in the first stage's top 1" in rep.lines()[0]


def test_sample_is_seeded_and_stratified_by_document():
    corpus = {}
    for title, n in (("A", 20), ("B", 2), ("C", 1)):
        for i in range(n):
            corpus[f"{title}#{i}"] = Passage(f"{title}#{i}", "t", title)
    s = sample_passages(corpus, 6, seed=3)
    assert s == sample_passages(corpus, 6, seed=3) and len(set(s)) == 6
    assert {p.split("#")[0] for p in s[:3]} == {"A", "B", "C"}  # one of each document before any second
    assert sum(p.startswith("A") for p in s) == 3  # then B's second, then A
    assert sorted(sample_passages(corpus, 100)) == sorted(corpus)  # n > corpus: all
    assert sample_passages(corpus, 6, seed=4) != s
    with pytest.raises(ValueError, match="n: expected an int >= 1"):
        sample_passages(corpus, 0)


def test_prompt_uses_your_examples_or_the_builtin_ones():
    mine = generation_messages("A passage.", examples=["my first query", "my second"])[1]["content"]
    assert "- my first query\n- my second\n" in mine and "Passage: A passage.\nQuestion:" in mine
    builtin = generation_messages("A passage.")[1]["content"]
    assert builtin.count("Example question:") == 3 and builtin.endswith("Passage: A passage.\nQuestion:") and "insulin" in builtin


def test_claim_template_has_its_own_examples_and_hash():
    from intdistill.llm.generate import BUILTIN_CLAIMS, TEMPLATES, GenerationTemplate

    claim = generation_messages("A passage.", template="claim")[1]["content"]
    assert claim.count("Example claim:") == 3 and "Example question:" not in claim
    assert all(c in claim for _, c in BUILTIN_CLAIMS) and claim.endswith("Passage: A passage.\nClaim:")
    assert "- a claim of mine\n" in generation_messages("A passage.", examples=["a claim of mine"], template="claim")[1]["content"]
    assert TEMPLATES["claim"].hash != TEMPLATES["inpars"].hash
    # the built-in examples are part of the prompt, so they are part of its hash
    t = TEMPLATES["inpars"]
    other = GenerationTemplate(**{**t.__dict__, "builtin": t.builtin[:2]})
    assert other.hash != t.hash and GenerationTemplate(**t.__dict__).hash == t.hash
    assert parse_query("Claim: Aspirin lowers the risk of stroke.") == "Aspirin lowers the risk of stroke."


# ------------------------------------------------------------------------------------------- the command


def writer(messages):
    """The fake LLM: a question about the passage, or a misbehaviour planned by the passage's number."""
    user = messages[-1]["content"]
    passage = re.split(r"\n(?:Question|Claim):", user.rsplit("Passage: ", 1)[1])[0]
    m = re.search(r"item (\d+)", passage)
    i = int(m.group(1)) if m else -1
    if i == 1:
        return ""  # empty
    if i == 2:
        return passage  # the passage echoed back
    if i == 3:
        return "Sure! Here is a question:\nWhat is special about item three?"  # chatter, then the question
    if i in (4, 5):
        return "What is the shared item?"  # a duplicate
    if i == 6:
        return "<think>" + "hmm " * 50  # thinking that never ends: nothing usable
    if user.endswith("Claim:"):
        return f"Claim: Item {i} has a size and a colour."
    return f"What do we know about item {i}?"


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(fake_openai, "ranking_for", writer)
    with FakeOpenAI() as server:
        yield server


def _corpus(tmp_path, n=12):
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps({"_id": f"p{i}", "title": f"doc {i}",
                                        "text": f"This passage describes item {i} and its colour, size and use."}) + "\n"
                            for i in range(n)))
    return path


def _argv(fake, corpus, out, *extra):
    return ["generate-queries", "--corpus", str(corpus), "--out", str(out), "-n", "12", "--llm-base-url",
            fake.base_url, "--llm-model", "fake-model", "--cache", str(out.parent / "cache.sqlite"),
            "--concurrency", "2", *extra]


def test_generate_filters_counts_and_resumes_with_zero_calls(fake, tmp_path, capsys):
    corpus = _corpus(tmp_path)
    out = tmp_path / "gen.jsonl"
    assert cli.main(_argv(fake, corpus, out)) == 0
    err = capsys.readouterr().err
    assert fake.n_requests == 12
    assert "queries: 8 kept of 12 generated; dropped: empty 2, overlong 0, unrelated 0, copied 1, duplicate 1" in err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    sources = {r["source"] for r in rows}
    assert len(rows) == 8 and sources - {"p4", "p5"} == {f"p{i}" for i in (0, 3, 7, 8, 9, 10, 11)}
    assert len(sources & {"p4", "p5"}) == 1  # the duplicate: the first in sample order is kept
    assert all(r["_id"] == f"gen-{r['source']}" and r["model"] == "fake-model" and r["prompt_hash"] for r in rows)
    assert next(r for r in rows if r["source"] == "p3")["text"] == "What is special about item three?"
    assert next(r for r in rows if r["source"] == "p3")["output"].startswith("Sure!")  # the raw answer is kept
    queries = data.load_queries(out)  # a queries file
    assert len(queries) == 8 and data.load_sources(out)["gen-p7"] == "p7"
    assert data.load_qrels(qrels_path(out))["gen-p7"] == {"p7": 1}
    assert len(journal_path(out).read_text().splitlines()) == 12  # every raw answer, kept or not
    # a rerun makes zero calls and writes the same file
    before = out.read_text()
    assert cli.main(_argv(fake, corpus, out)) == 0
    assert fake.n_requests == 12 and out.read_text() == before
    assert "0 written about now, 12 already in the journal" in capsys.readouterr().err


def test_generate_claims(fake, tmp_path, capsys):
    corpus = _corpus(tmp_path)
    out = tmp_path / "claims.jsonl"
    assert cli.main(_argv(fake, corpus, out, "--template", "claim")) == 0
    rows = {r["source"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["p7"]["text"] == "Item 7 has a size and a colour." and rows["p7"]["template"] == "claim"
    assert "Example claim:" in fake.requests[0]["body"]["messages"][-1]["content"]


def test_generate_with_examples_round_trip_and_bad_settings(fake, tmp_path, capsys, tiny_bert_dir):
    corpus = _corpus(tmp_path)
    examples = tmp_path / "mine.jsonl"
    examples.write_text(json.dumps({"_id": "e1", "text": "my style of query"}) + "\n")
    out = tmp_path / "gen.jsonl"
    assert cli.main(_argv(fake, corpus, out, "--examples", str(examples), "--filter-top", "2",
                          "--retriever", str(tiny_bert_dir), "--device", "cpu")) == 0
    err = capsys.readouterr().err
    assert "your 1 examples" in err and "- my style of query" in fake.requests[0]["body"]["messages"][-1]["content"]
    m = re.search(r"queries: (\d+) kept of 12 generated; .* round_trip (\d+) \(round trip", err)
    assert m and int(m.group(1)) + int(m.group(2)) == 8  # the round trip judged the 8 that passed the rest
    # a journal written by another model is refused, naming it
    argv = _argv(fake, corpus, out)
    argv[argv.index("fake-model")] = "other-model"
    assert cli.main(argv) == 2
    assert "the journal holds queries from model 'fake-model'" in capsys.readouterr().err
    # so is one written with other examples, or without them
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"_id": "e2", "text": "another style"}) + "\n")
    argv = _argv(fake, corpus, out, "--examples", str(other), "--filter-top", "2", "--retriever", str(tiny_bert_dir),
                 "--device", "cpu")
    assert cli.main(argv) == 2 and "other --examples" in capsys.readouterr().err
    assert cli.main(_argv(fake, corpus, out)) == 2 and "other --examples" in capsys.readouterr().err
    n = fake.n_requests  # the same examples resume with no call
    assert cli.main(_argv(fake, corpus, out, "--examples", str(examples), "--filter-top", "2",
                          "--retriever", str(tiny_bert_dir), "--device", "cpu")) == 0 and fake.n_requests == n
    capsys.readouterr()
    # so is one written with another template (its prompt hash differs): nothing is mixed or overwritten
    before = out.read_text()
    assert cli.main(_argv(fake, corpus, out, "--template", "claim")) == 2
    assert "write to another --out" in capsys.readouterr().err and out.read_text() == before


def test_source_first_lists(tmp_path):
    corpus = {d: Passage(d, d) for d in "abcdefg"}
    lists = {"q1": ["a", "b", "c"], "q2": ["d", "e", "f"]}
    got, rep = build_lists("source-first", lists, corpus, {"q1": "one", "q2": "two"}, sources={"q1": "b", "q2": "g"})
    assert got[0].cands == ("a", "b", "c") and got[0].permutation == (1, 0, 2) and got[0].top == 1
    assert got[1].cands == ("g", "d", "e") and got[1].permutation == (0, 1, 2)  # missed: put first, "f" gives way
    assert rep.n_inserted == 1 and "1 source passages missed by the first stage were put first" in rep.line()
    with pytest.raises(DataError, match="source-first' needs generated queries"):
        build_lists("source-first", lists, corpus, {"q1": "one", "q2": "two"})
    with pytest.raises(DataError, match="query 'q2' names no source passage in the corpus"):
        build_lists("source-first", lists, corpus, {"q1": "one", "q2": "two"}, sources={"q1": "b", "q2": "zz"})
    bad = tmp_path / "q.jsonl"
    bad.write_text(json.dumps({"_id": "q1", "text": "x"}) + "\n")
    with pytest.raises(DataError, match="q.jsonl:1: expected a 'source' field"):
        data.load_sources(bad)


# ------------------------------------------------------------------------------------------- corpus formats


def test_tsv_corpus_and_queries(tmp_path):
    two = tmp_path / "collection.tsv"
    two.write_text("0\tThe first passage.\n1\tThe second passage.\n")
    c = data.load_corpus(two)
    assert [(p.id, p.title, p.text) for p in c.values()] == [("0", "", "The first passage."), ("1", "", "The second passage.")]
    three = tmp_path / "titled.tsv"
    three.write_text("d1\tA title\tSome text.\r\nd2\tB\tMore text.\r\n")
    assert data.load_corpus(three)["d1"].full_text() == "A title Some text."
    header = tmp_path / "header.tsv"
    header.write_text("doc_id\turl\ttitle\ttext\nx\thttp://a\tT\tbody of x\n")
    assert data.load_corpus(header)["x"] == Passage("x", "body of x", "T")
    q = tmp_path / "queries.tsv"
    q.write_text("qid\tquery\n7\twhat is this\n")
    assert data.load_queries(q)["7"].text == "what is this"
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tfirst\nb\tsecond\textra\n")
    with pytest.raises(DataError, match=r"bad\.tsv:2: expected 2 tab-separated cells as on the first line, got 3"):
        data.load_corpus(bad)
    one = tmp_path / "one.tsv"
    one.write_text("just-one-cell\n")
    with pytest.raises(DataError, match=r"one\.tsv:1: expected corpus TSV lines 'id<TAB>text'"):
        data.load_corpus(one)
    dup = tmp_path / "dup.tsv"
    dup.write_text("a\tx\na\ty\n")
    with pytest.raises(DataError, match=r"dup\.tsv:2: expected unique passage ids, got 'a' again"):
        data.load_corpus(dup)


def test_ir_datasets_identifiers(monkeypatch):
    Doc = types.SimpleNamespace
    ds = types.SimpleNamespace(
        has_docs=lambda: True, has_queries=lambda: True, has_qrels=lambda: True,
        docs_iter=lambda: iter([Doc(doc_id="d1", title="T", text="text one"), Doc(doc_id="d2", title="", text="two")]),
        queries_iter=lambda: iter([Doc(query_id="q1", text="a question")]),
        qrels_iter=lambda: iter([Doc(query_id="q1", doc_id="d2", relevance=1, iteration="0")]),
    )
    fake = types.ModuleType("ir_datasets")
    fake.load = lambda name: ds if name == "beir/scifact" else (_ for _ in ()).throw(KeyError(name))
    monkeypatch.setitem(sys.modules, "ir_datasets", fake)
    assert data.load_corpus("irds:beir/scifact")["d1"] == Passage("d1", "text one", "T")
    assert data.load_queries("irds:beir/scifact")["q1"].text == "a question"
    assert data.load_qrels("irds:beir/scifact") == {"q1": {"d2": 1}}
    with pytest.raises(DataError, match="ir_datasets has no dataset 'nope'"):
        data.load_corpus("irds:nope")

    def offline():
        raise ConnectionError("no network")
        yield  # pragma: no cover

    ds.docs_iter = offline
    with pytest.raises(DataError, match="local copy of ir_datasets' 'beir/scifact' docs is missing"):
        data.load_corpus("irds:beir/scifact")
    monkeypatch.setitem(sys.modules, "ir_datasets", None)  # not installed
    with pytest.raises(DataError, match=r"pip install 'intdistill\[irds\]'"):
        data.load_corpus("irds:beir/scifact")
