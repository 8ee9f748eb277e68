"""Retrieval-augmented QA (intdistill.rag, `intdistill rag`, `intdistill ask`) against the fake OpenAI server:
hand-computed EM / F1 / Acc@k, the reader prompt, resume without repeated calls, refusal of another run's file,
answer parsing, the CLI end to end on a tiny index, bad input."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from intdistill import cli
from intdistill.data import DataError, Passage, Query
from intdistill.index import DenseIndex, Hits
from intdistill.llm.cache import LLMCache
from intdistill.llm.client import LLMClient
from intdistill.rag import (READER_TEMPLATES, ReaderConfig, answer_questions, ask, load_predictions, parse_answer,
                            reader_messages)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_openai  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402

CORPUS = {
    "fr": Passage("fr", "Paris is the capital and largest city of France.", "France"),
    "de": Passage("de", "Berlin is the capital of Germany.", "Germany"),
    "ham": Passage("ham", "Hamlet is a tragedy written by William Shakespeare around 1600.", "Hamlet"),
    "spi": Passage("spi", "Spiders are arachnids; every spider has eight legs.", "Spider"),
    "sea": Passage("sea", "The ocean covers most of the surface of the Earth.", "Ocean"),
    "moon": Passage("moon", "The Moon orbits the Earth once a month.", "Moon"),
}
# question -> (gold answers, what the fake reader says, the fixed ranking the toy retriever returns)
CASES = {
    "q1": ("What is the capital of France?", ("Paris",), "Answer: Paris.", ["fr", "de"]),
    "q2": ("Who wrote Hamlet?", ("William Shakespeare",), "Shakespeare", ["ham", "moon"]),
    "q3": ("What color is the sky?", ("blue", "light blue"), '"the deep blue sea"', ["sea", "moon"]),
    "q4": ("How many legs does a spider have?", ("eight", "8"), "I don't know", ["moon", "spi"]),
    "q5": ("Say something about the Moon.", (), "It orbits the Earth.", ["moon", "sea"]),
}
QUERIES = {q: Query(q, text, answers) for q, (text, answers, _, _) in CASES.items()}
SAYS = {text: said for text, _, said, _ in CASES.values()}
# Hand-computed SQuAD scores (normalised: lower case, no punctuation, no articles):
#   q1 "Paris" = "paris": EM 1, F1 1
#   q2 "shakespeare" vs "william shakespeare": overlap 1, P 1, R 1/2 -> F1 2/3
#   q3 "deep blue sea" vs "blue": P 1/3, R 1 -> F1 1/2; vs "light blue": P 1/3, R 1/2 -> 2/5; max 1/2
#   q4 "i dont know": no overlap -> 0;  q5: no gold answers, not scored
WANT_EM = {"q1": 1.0, "q2": 0.0, "q3": 0.0, "q4": 0.0}
WANT_F1 = {"q1": 1.0, "q2": 2 / 3, "q3": 0.5, "q4": 0.0}
# first retrieved passage holding a gold answer (k=2): q1 fr, q2 ham, q3 none, q4 spi at rank 2
WANT_HIT = {"q1": 1, "q2": 1, "q3": None, "q4": 2}


def reader_says(messages: list[dict]) -> str:
    """The fake reader: a fixed answer per question (the `Question:` line of the last user message)."""
    user = [m["content"] for m in messages if m.get("role") == "user"][-1]
    m = re.search(r"^Question: (.*)$", user, re.M)
    return SAYS.get(m.group(1), "no idea") if m else "no question"


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(fake_openai, "ranking_for", reader_says)
    with FakeOpenAI() as server:
        yield server


class ToyRetrieve:
    """The fixed rankings of CASES (scores 0.9, 0.8, ...)."""

    retrieval_id = "toy-v1"

    def __init__(self):
        self.ranked = {text: ids for text, _, _, ids in CASES.values()}
        self.calls = 0

    def __call__(self, texts, k):
        self.calls += 1
        ids = [self.ranked[t][:k] for t in texts]
        return Hits(ids, np.array([[0.9 - 0.1 * r for r in range(len(row))] for row in ids], dtype=np.float32))


def client_for(fake, tmp_path, model="fake-model", **kw):
    return LLMClient(fake.base_url, model, max_retries=0, timeout=20, cache=LLMCache(tmp_path / "cache.sqlite"), **kw)


# ---------------------------------------------------------------------------------------------- parse_answer


@pytest.mark.parametrize("text, want", [
    ("Paris", "Paris"),
    ("  Paris  ", "Paris"),
    ("Answer: Paris.", "Paris"),
    ("answer : Paris", "Paris"),
    ("A: 1600.", "1600"),
    ("Final answer: eight", "eight"),
    ("**Answer:** Paris", "Paris"),
    ("**Answer**: Paris", "Paris"),
    ("Answer:\nParis", "Paris"),
    ("\n\nParis\nIt is the capital of France.", "Paris"),
    ('"Paris"', "Paris"),
    ("'Paris'", "Paris"),
    ("\u201cWilliam Shakespeare.\u201d", "William Shakespeare"),
    ('"Paris".', "Paris"),
    ("**Paris**", "Paris"),
    ("Paris [1]", "Paris"),
    ("Paris [1, 3].", "Paris"),
    ("Paris. [2]", "Paris"),
    ("<think>France... capital</think>\nAnswer: Paris", "Paris"),
    ("<think>still thinking", ""),
    ("U.S.", "U.S"),
    ("Area: 51", "Area: 51"),  # only Answer:/A: prefixes are dropped
    ('"Paris', '"Paris'),  # unmatched quote kept
    ("wait...", "wait..."),  # an ellipsis is not a period
    ("", ""),
    (" \n ", ""),
])
def test_parse_answer(text, want):
    assert parse_answer(text) == want


def test_parse_answer_needs_a_string():
    with pytest.raises(TypeError, match="expected a str, got NoneType"):
        parse_answer(None)


# ---------------------------------------------------------------------------------------------- prompt


def test_reader_prompt_numbers_passages_and_asks_for_a_short_span():
    msgs = reader_messages("Who wrote Hamlet?", [CORPUS["ham"], CORPUS["moon"]])
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    assert user.startswith("Passages:\n[1] Hamlet: Hamlet is a tragedy written by William Shakespeare around 1600.\n"
                           "[2] Moon: The Moon orbits the Earth once a month.\n\nQuestion: Who wrote Hamlet?\n")
    assert "Answer with a few words taken from the passages" in user
    cut = reader_messages("Who?", [CORPUS["ham"]], ReaderConfig(max_words=3))[1]["content"]
    assert "[1] Hamlet: Hamlet is\n" in cut
    compact = reader_messages("Who?", [Passage("x", "no title")], ReaderConfig(template="compact"))
    assert [m["role"] for m in compact] == ["user"] and compact[0]["content"].startswith("[1] no title\n")
    hashes = {ReaderConfig(template=name).prompt_hash for name in READER_TEMPLATES}
    assert len(hashes) == len(READER_TEMPLATES) and all(re.fullmatch(r"[0-9a-f]{12}", h) for h in hashes)


def test_reader_config_errors_name_the_value():
    for kw, msg in [({"template": "nope"}, "unknown reader template 'nope'; expected one of"),
                    ({"max_tokens": 0}, "max_tokens: expected an int >= 1, got 0"),
                    ({"max_words": 0}, "max_words: expected an int >= 1 or None, got 0"),
                    ({"temperature": -1}, r"temperature: expected a number in \[0, 2\], got -1")]:
        with pytest.raises(ValueError, match=msg):
            ReaderConfig(**kw)


# ---------------------------------------------------------------------------------------------- answer_questions


def test_answer_questions_scores_by_hand(fake, tmp_path):
    out = tmp_path / "preds.jsonl"
    with client_for(fake, tmp_path) as client:
        res = answer_questions(ToyRetrieve(), QUERIES, CORPUS, client, k=2, out=out, progress=False)
    assert fake.n_requests == 5 and res.n_answered_now == 5 and res.n_done_before == 0 and res.stopped is None
    assert res.predictions == {"q1": "Paris", "q2": "Shakespeare", "q3": "the deep blue sea", "q4": "I don't know",
                               "q5": "It orbits the Earth"}
    assert res.n_scored == 4 and res.n_unscored == 1
    assert res.em == pytest.approx(1 / 4)
    assert res.f1 == pytest.approx((1 + 2 / 3 + 1 / 2 + 0) / 4)
    assert res.accuracy == pytest.approx(3 / 4)
    assert res.measures() == {"EM": res.em, "F1": res.f1, "Acc@2": res.accuracy}
    by_qid = {r.qid: r for r in res.records}
    for q in WANT_EM:
        assert by_qid[q].em == WANT_EM[q] and by_qid[q].f1 == pytest.approx(WANT_F1[q])
        assert by_qid[q].hit_rank == WANT_HIT[q], q
    q5 = by_qid["q5"]
    assert q5.em is None and q5.f1 is None and q5.hit_rank is None and q5.answers == ()
    assert res.ledger.calls == 5 and res.ledger.cache_hits == 0

    # the reader saw the retrieved passages, numbered in rank order, and the question
    asked = {}
    for r in fake.requests:
        user = r["body"]["messages"][-1]["content"]
        asked[re.search(r"^Question: (.*)$", user, re.M).group(1)] = user
    assert "[1] Spider: Spiders" not in asked[CASES["q4"][0]]
    assert "[1] Moon: The Moon orbits" in asked[CASES["q4"][0]] and "\n[2] Spider: Spiders are" in asked[CASES["q4"][0]]
    assert {r["body"]["max_tokens"] for r in fake.requests} == {32}
    assert {r["body"]["temperature"] for r in fake.requests} == {0.0}

    # the file: one line per question, everything needed to audit it
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(d["qid"] for d in lines) == sorted(CASES)
    q1 = next(d for d in lines if d["qid"] == "q1")
    assert q1["docids"] == ["fr", "de"] and q1["scores"] == pytest.approx([0.9, 0.8])
    assert q1["output"] == "Answer: Paris." and q1["prediction"] == "Paris" and q1["answers"] == ["Paris"]
    assert (q1["em"], q1["f1"], q1["hit_rank"]) == (1.0, 1.0, 1)
    assert q1["model"] == "fake-model" and q1["k"] == 2 and q1["retrieval_id"] == "toy-v1"
    assert q1["template"] == "short-answer" and q1["prompt_hash"] == ReaderConfig().prompt_hash
    assert q1["prompt_tokens"] > 0 and q1["cached"] is False
    assert load_predictions(out)["q3"].f1 == pytest.approx(0.5)


def test_budget_stop_keeps_the_answers_and_a_rerun_makes_only_the_missing_calls(fake, tmp_path):
    out = tmp_path / "preds.jsonl"
    with client_for(fake, tmp_path, max_calls=2) as client:
        first = answer_questions(ToyRetrieve(), QUERIES, CORPUS, client, k=2, out=out, progress=False)
    assert first.stopped and "max_calls=2" in first.stopped
    assert fake.n_requests == 2 and first.n_answered_now == 2 and len(load_predictions(out)) == 2
    assert len(first.records) == 2  # the means cover what was answered
    done = set(load_predictions(out))

    with client_for(fake, tmp_path) as client:
        second = answer_questions(ToyRetrieve(), QUERIES, CORPUS, client, k=2, out=out, progress=False)
    assert fake.n_requests == 5  # three new calls, none repeated
    asked = {re.search(r"^Question: (.*)$", r["body"]["messages"][-1]["content"], re.M).group(1)
             for r in fake.requests[2:]}
    assert asked == {QUERIES[q].text for q in CASES if q not in done}
    assert second.n_done_before == 2 and second.n_answered_now == 3 and second.stopped is None
    assert [r.qid for r in second.records] == list(CASES)  # query order, earlier answers included
    assert second.em == pytest.approx(1 / 4) and second.f1 == pytest.approx((1 + 2 / 3 + 1 / 2) / 4)
    assert len(out.read_text().splitlines()) == 5

    # a crash mid-write leaves a cut-off last line: it is dropped and that question answered again (from the cache)
    text = out.read_text()
    last = text.splitlines()[-1]
    out.write_text(text[: len(text) - len(last) - 1] + last[:25])
    lost = json.loads(last)["qid"]
    with client_for(fake, tmp_path) as client:
        third = answer_questions(ToyRetrieve(), QUERIES, CORPUS, client, k=2, out=out, progress=False)
    assert fake.n_requests == 5 and third.ledger.cache_hits == 1 and third.n_answered_now == 1
    assert [r.qid for r in third.records if r.cached] == [lost]
    assert sorted(load_predictions(out)) == sorted(CASES) and out.read_text().endswith("\n")

    # a fresh file: every answer comes from the cache, no call
    with client_for(fake, tmp_path) as client:
        fresh = answer_questions(ToyRetrieve(), QUERIES, CORPUS, client, k=2, out=tmp_path / "again.jsonl",
                                 progress=False)
    assert fake.n_requests == 5 and fresh.ledger.calls == 0 and fresh.ledger.cache_hits == 5
    assert fresh.predictions == second.predictions


def test_a_file_from_another_run_is_refused(fake, tmp_path):
    out = tmp_path / "preds.jsonl"
    few = {q: QUERIES[q] for q in ("q1", "q2")}
    with client_for(fake, tmp_path, model="model-a") as client:
        answer_questions(ToyRetrieve(), few, CORPUS, client, k=2, out=out, progress=False)
    n = fake.n_requests
    with client_for(fake, tmp_path, model="model-b") as client:
        with pytest.raises(DataError, match=re.escape(str(out)) + r".*model 'model-a' vs 'model-b'.*another --out"):
            answer_questions(ToyRetrieve(), QUERIES, CORPUS, client, k=2, out=out, progress=False)
    with client_for(fake, tmp_path, model="model-a") as client:
        with pytest.raises(DataError, match="k 2 vs 1"):
            answer_questions(ToyRetrieve(), QUERIES, CORPUS, client, k=1, out=out, progress=False)
        with pytest.raises(DataError, match="prompt_hash"):
            answer_questions(ToyRetrieve(), QUERIES, CORPUS, client, k=2, out=out, progress=False,
                             config=ReaderConfig(template="compact"))
        other = ToyRetrieve()
        other.retrieval_id = "another-retriever"
        with pytest.raises(DataError, match="retrieval_id 'toy-v1' vs 'another-retriever'"):
            answer_questions(other, QUERIES, CORPUS, client, k=2, out=out, progress=False)
    assert fake.n_requests == n and len(load_predictions(out)) == 2


def test_load_predictions_bad_lines_name_file_and_line(tmp_path):
    good = {"qid": "a", "question": "q?", "docids": ["x"], "scores": [0.5], "prediction": "p", "output": "p",
            "model": "m", "prompt_hash": "h", "k": 1}
    p = tmp_path / "bad.jsonl"
    for body, msg in [
        (json.dumps(good) + "\n{nope\n", r"bad.jsonl:2: expected a JSON object, got invalid JSON"),
        (json.dumps({**good, "k": 0}) + "\n", r"bad.jsonl:1: expected 'k' to be a positive int, got 0"),
        (json.dumps({**good, "scores": [1, 2]}) + "\n", r":1: expected 'scores' to be 1 numbers"),
        (json.dumps({"qid": "a"}) + "\n", r":1: expected a prediction object with fields .* missing question"),
        (json.dumps(good) + "\n" + json.dumps(good) + "\n", r":2: expected one line per question, got question 'a' again"),
        ("[1]\n", r":1: expected a JSON object, got array \[1\]"),
    ]:
        p.write_text(body)
        with pytest.raises(DataError, match=msg):
            load_predictions(p)


def test_bad_arguments(fake, tmp_path, tiny_index):
    index, retriever = tiny_index
    with client_for(fake, tmp_path) as client:
        for kw, err, msg in [
            ({"k": 0}, ValueError, r"k: expected an int >= 1 \(passages per question\), got 0"),
            ({"queries": {}}, ValueError, "expected at least one question, got none"),
            ({"retrieve": index}, ValueError, "pass retriever="),
            ({"retrieve": "idx"}, TypeError, "expected a DenseIndex or a callable"),
            ({"retrieve": lambda texts, k: Hits([["nope"]] * len(texts), np.ones((len(texts), 1)))}, DataError,
             "retrieved passage 'nope' .* is not in the corpus"),
        ]:
            args = {"retrieve": ToyRetrieve(), "queries": QUERIES, "corpus": CORPUS, "client": client, "k": 2,
                    "progress": False, **kw}
            with pytest.raises(err, match=msg):
                answer_questions(**args)
        with pytest.raises(ValueError, match="question: expected a non-empty str"):
            ask("  ", ToyRetrieve(), CORPUS, client)
    assert fake.n_requests == 0


def test_ask_returns_the_answer_with_its_sources(fake, tmp_path):
    with client_for(fake, tmp_path) as client:
        a = ask("Who wrote Hamlet?", ToyRetrieve(), CORPUS, client, k=2, snippet_words=4)
    assert a.answer == "Shakespeare" and a.output == "Shakespeare" and a.model == "fake-model" and not a.cached
    assert [(s.rank, s.docid, s.title) for s in a.sources] == [(1, "ham", "Hamlet"), (2, "moon", "Moon")]
    assert a.sources[0].score == pytest.approx(0.9)
    assert a.sources[0].snippet == "Hamlet is a tragedy ..." and a.sources[1].snippet == "The Moon orbits the ..."


# ---------------------------------------------------------------------------------------------- CLI, tiny index


@pytest.fixture(scope="module")
def tiny_index(tiny_bert_dir, tmp_path_factory):
    """`intdistill index` over CORPUS with the tiny random BERT: (DenseIndex, Retriever)."""
    from intdistill.models import Retriever

    d = tmp_path_factory.mktemp("rag-index")
    corpus_file = d / "corpus.jsonl"
    corpus_file.write_text("".join(json.dumps({"_id": p.id, "title": p.title, "text": p.text}) + "\n"
                                   for p in CORPUS.values()))
    assert cli.main(["index", "--retriever", str(tiny_bert_dir), "--corpus", str(corpus_file), "--out", str(d / "idx"),
                     "--check-sample", "0", "--device", "cpu"]) == 0
    return DenseIndex.load(d / "idx"), Retriever.load(tiny_bert_dir, device="cpu")


def _queries_file(path: Path, cases) -> Path:
    path.write_text("".join(json.dumps({"_id": q, "text": CASES[q][0], "answers": list(CASES[q][1])}) + "\n"
                            for q in cases))
    return path


def _stdout_measures(out: str) -> dict[str, str]:
    return dict(line.split() for line in out.strip().splitlines())


def test_cli_rag_and_ask_end_to_end(fake, tiny_index, tmp_path, capsys):
    index, retriever = tiny_index
    idx = Path(index.meta.corpus_path).parent / "idx"
    assert index.meta.corpus_path == str((idx.parent / "corpus.jsonl").resolve())  # recorded by `intdistill index`
    queries = _queries_file(tmp_path / "q.jsonl", CASES)
    preds = tmp_path / "preds.jsonl"
    llm = ["--llm-base-url", fake.base_url, "--llm-model", "fake-model", "--max-retries", "0",
           "--cache", str(tmp_path / "cache.sqlite")]
    argv = ["rag", "--index", str(idx), "--queries", str(queries), "-k", "6", "--out", str(preds), "--device", "cpu", *llm]

    # a budget stop: exit 3, what was answered is saved and scored
    assert cli.main([*argv, "--max-calls", "2", "--concurrency", "1"]) == 3
    cap = capsys.readouterr()
    assert "stopped: budget reached: max_calls=2" in cap.err and "rerun to go on" in cap.err
    assert _stdout_measures(cap.out)["scored"] == "2" and len(load_predictions(preds)) == 2

    # the rerun finishes: k=6 retrieves all six passages, so Acc@6 = 3/4 (no passage says "blue")
    assert cli.main(argv) == 0
    cap = capsys.readouterr()
    got = _stdout_measures(cap.out)
    assert got == {"EM": "0.2500", "F1": f"{(1 + 2 / 3 + 1 / 2) / 4:.4f}", "Acc@6": "0.7500", "scored": "4"}
    assert "3 now, 2 already in" in cap.err and "1 without gold answers" in cap.err and "ledger: 3 calls" in cap.err
    assert fake.n_requests == 5
    recs = load_predictions(preds)
    want = index.search_text(retriever, [CASES["q1"][0]], 6)
    assert list(recs["q1"].docids) == want.docids[0]
    assert recs["q1"].scores == pytest.approx(want.scores[0].tolist(), abs=1e-6)
    assert recs["q1"].retrieval_id == retriever.fingerprint()

    # --sample 2 --max-queries 1 picks one question; it is in the file already: no call
    assert cli.main([*argv, "--sample", "2", "--seed", "1", "--max-queries", "1"]) == 0
    assert "1 of 1 answered (0 now, 1 already in" in capsys.readouterr().err and fake.n_requests == 5

    # ask: the answer, then the numbered sources in retrieval order
    assert cli.main(["ask", "What is the capital of France?", "--index", str(idx), "-k", "3", "--words", "3",
                     "--device", "cpu", *llm]) == 0
    lines = capsys.readouterr().out.splitlines()
    want = index.search_text(retriever, ["What is the capital of France?"], 3)
    assert lines[0] == "Paris" and lines[1:3] == ["", "sources:"]
    assert len(lines) == 6
    for rank, (line, docid, score) in enumerate(zip(lines[3:], want.docids[0], want.scores[0].tolist()), 1):
        p = CORPUS[docid]
        words = p.text.split()
        assert line == f"[{rank}] {docid} ({score:.4f}) {p.title}: {' '.join(words[:3])} ..."
    assert fake.n_requests == 6  # three passages, not rag's six: another prompt, a new call
    assert cli.main(["ask", "What is the capital of France?", "--index", str(idx), "-k", "3", "--device", "cpu",
                     *llm]) == 0
    assert "fake-model (cached)" in capsys.readouterr().err and fake.n_requests == 6


def test_hybrid_retrieve_rescores_the_inner_pool(tiny_index):
    """HybridRetrieve: the inner retrieve's top pool (capped at limit) re-scored by lexical_rescore, cut to k."""
    from intdistill.candidates import CandidateList, Candidates, lexical_rescore
    from intdistill.rag import HybridRetrieve, IndexRetrieve

    index, retriever = tiny_index
    inner = IndexRetrieve(index, retriever)
    texts = [CASES[q][0] for q in CASES]
    hybrid = HybridRetrieve(inner, CORPUS, 30.0, pool=4, limit=len(index))
    got = hybrid(texts, 2)
    dense = inner(texts, 4)
    want = lexical_rescore(Candidates({str(i): CandidateList(tuple(d), tuple(map(float, s)), t)
                                       for i, (d, s, t) in enumerate(zip(dense.docids, dense.scores, texts))}),
                           CORPUS, 30.0, 2)
    assert got.docids == [list(want[str(i)].docids) for i in range(len(texts))]
    np.testing.assert_allclose(got.scores, [want[str(i)].scores for i in range(len(texts))], rtol=1e-6)
    assert got.scores.shape == (len(texts), 2)
    assert hybrid.retrieval_id == retriever.fingerprint() + "+bm25x30/4"
    # a pool past the index is the index; k past the pool widens it
    assert HybridRetrieve(inner, CORPUS, 30.0, pool=100, limit=len(index))(texts[:1], 3).scores.shape == (1, 3)
    assert len(HybridRetrieve(inner, CORPUS, 30.0, pool=1, limit=len(index))(texts[:1], 3).docids[0]) == 3
    for kwargs, message in (({"weight": -1.0}, "lexical weight: expected a finite number >= 0"),
                            ({"weight": 1.0, "pool": 0}, "pool: expected an int >= 1")):
        with pytest.raises(ValueError, match=message):
            HybridRetrieve(inner, CORPUS, **kwargs)
    with pytest.raises(TypeError, match="inner: expected a callable"):
        HybridRetrieve(index, CORPUS, 1.0)


def test_cli_rag_and_ask_hybrid(fake, tiny_index, tmp_path, capsys):
    """rag/ask --lexical-weight: the passages and scores of HybridRetrieve, its retrieval id in the predictions."""
    from intdistill.rag import HybridRetrieve, IndexRetrieve

    index, retriever = tiny_index
    idx = Path(index.meta.corpus_path).parent / "idx"
    queries = _queries_file(tmp_path / "q.jsonl", CASES)
    preds = tmp_path / "preds.jsonl"
    llm = ["--llm-base-url", fake.base_url, "--llm-model", "fake-model", "--max-retries", "0",
           "--cache", str(tmp_path / "cache.sqlite")]
    assert cli.main(["rag", "--index", str(idx), "--queries", str(queries), "-k", "2", "--out", str(preds),
                     "--device", "cpu", "--lexical-weight", "30", "--lexical-pool", "5", *llm]) == 0
    assert ("hybrid: the dense top 5 re-scored by 20 x cosine + 30 x BM25 / max_q; BM25 statistics saved with the "
            "index") in capsys.readouterr().err
    hybrid = HybridRetrieve(IndexRetrieve(index, retriever), CORPUS, 30.0, pool=5, limit=len(index))
    recs = load_predictions(preds)
    for qid in CASES:
        want = hybrid([CASES[qid][0]], 2)
        assert list(recs[qid].docids) == want.docids[0]
        assert recs[qid].scores == pytest.approx(want.scores[0].tolist(), abs=1e-5)
        assert recs[qid].retrieval_id == hybrid.retrieval_id
    assert cli.main(["ask", "What is the capital of France?", "--index", str(idx), "-k", "2", "--device", "cpu",
                     "--lexical-weight", "30", "--lexical-pool", "5", *llm]) == 0
    cap = capsys.readouterr()
    want = hybrid(["What is the capital of France?"], 2)
    assert [line.split()[1] for line in cap.out.splitlines()[3:]] == want.docids[0]
    assert "hybrid: the dense top 5" in cap.err and "saved with the index" in cap.err


def test_cli_llm_failure_exits_1_without_traceback_and_keeps_answers(fake, tiny_index, tmp_path, capsys):
    index, _ = tiny_index
    idx = Path(index.meta.corpus_path).parent / "idx"
    queries = _queries_file(tmp_path / "q.jsonl", CASES)
    preds = tmp_path / "preds.jsonl"
    argv = ["rag", "--index", str(idx), "--queries", str(queries), "-k", "2", "--out", str(preds), "--device", "cpu",
            "--llm-base-url", fake.base_url, "--llm-model", "fake-model", "--max-retries", "0", "--concurrency", "1",
            "--cache", str(tmp_path / "cache.sqlite")]
    fake.script(fake_openai.ok(), fake_openai.status(404, body='{"error": {"message": "model fake-model not found"}}'))
    assert cli.main(argv) == 1
    cap = capsys.readouterr()
    assert "intdistill rag: LLM error (LLMRequestError)" in cap.err and "404" in cap.err
    assert "rerun the same command to go on" in cap.err and "Traceback" not in cap.err
    assert len(load_predictions(preds)) == 1  # the answer obtained before the failure is saved
    n = fake.n_requests
    assert cli.main(argv) == 0  # the rerun asks only for the rest
    assert len(load_predictions(preds)) == len(CASES) and fake.n_requests == n + len(CASES) - 1


def test_cli_questions_without_answers_are_answered_not_scored(fake, tiny_index, tmp_path, capsys):
    index, _ = tiny_index
    idx = Path(index.meta.corpus_path).parent / "idx"
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"_id": "q5", "text": CASES["q5"][0]}) + "\n")
    assert cli.main(["rag", "--index", str(idx), "--queries", str(queries), "-k", "2", "--out",
                     str(tmp_path / "p.jsonl"), "--device", "cpu", "--llm-base-url", fake.base_url,
                     "--llm-model", "m"]) == 0
    cap = capsys.readouterr()
    assert _stdout_measures(cap.out) == {"EM": "n/a", "F1": "n/a", "Acc@2": "n/a", "scored": "0"}
    assert "1 of 1 questions have no gold answers" in cap.err
    assert load_predictions(tmp_path / "p.jsonl")["q5"].prediction == "It orbits the Earth"


def test_cli_bad_input_exits_2(fake, tiny_index, tmp_path, capsys):
    index, _ = tiny_index
    idx = Path(index.meta.corpus_path).parent / "idx"
    queries = _queries_file(tmp_path / "q.jsonl", ["q1"])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    wrong_corpus = tmp_path / "wrong.jsonl"
    wrong_corpus.write_text(json.dumps({"_id": "fr", "text": "Paris."}) + "\n")
    no_corpus = tmp_path / "idx-no-corpus"
    index.save(no_corpus)
    meta = json.loads((no_corpus / "meta.json").read_text())
    (no_corpus / "meta.json").write_text(json.dumps({**meta, "corpus_path": ""}))
    moved = tmp_path / "idx-moved"
    index.save(moved)
    (moved / "meta.json").write_text(json.dumps({**meta, "corpus_path": str(tmp_path / "gone.jsonl")}))
    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"qid": "q1", "question": "?", "docids": ["fr"], "scores": [1.0], "prediction": "x",
                                 "output": "x", "model": "other-model", "prompt_hash": "h", "k": 1}) + "\n")
    llm = ["--llm-base-url", fake.base_url, "--llm-model", "fake-model", "--device", "cpu"]
    rag = ["rag", "--queries", str(queries), "--out", str(tmp_path / "p.jsonl"), *llm]
    cases = [
        ([*rag, "--index", str(tmp_path / "missing")], "not found"),
        ([*rag, "--index", str(idx), "-k", "7"], "expected -k at most 6"),
        (["rag", "--index", str(idx), "--queries", str(empty), "--out", str(tmp_path / "p.jsonl"), *llm],
         "expected at least one query"),
        ([*rag, "--index", str(no_corpus)], "the index records no corpus file: give --corpus"),
        ([*rag, "--index", str(moved)], "gone.jsonl, is not there: give --corpus"),
        ([*rag, "--index", str(idx), "--corpus", str(wrong_corpus)],
         "expected every indexed passage in the corpus, got 5 of 6 missing"),
        (["rag", "--index", str(idx), "--queries", str(queries), "--out", str(preds), "-k", "1", *llm],
         "model 'other-model' vs 'fake-model'"),
        (["rag", "--index", str(idx), "--queries", str(queries), "--out", str(tmp_path / "p.jsonl")],
         "no LLM endpoint"),
        (["ask", "   ", "--index", str(idx), *llm], "expected a non-empty QUESTION"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    for argv, message in [([*rag, "--index", str(idx), "-k", "0"], "-k: expected a positive integer, got '0'"),
                          (["ask", "q", "--index", str(idx), "--template", "nope"], "invalid choice: 'nope'")]:
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2
        assert message in capsys.readouterr().err
    assert fake.n_requests == 0
    # with --corpus the index without a recorded corpus works
    assert cli.main([*rag, "--index", str(no_corpus), "--corpus", str(idx.parent / "corpus.jsonl"), "-k", "2"]) == 0
    assert _stdout_measures(capsys.readouterr().out)["EM"] == "1.0000"
