"""exact_search against brute force, the Candidates record and its JSONL, first_stage, and the
``intdistill candidates`` command (with the data loaders replaced by small local JSONL readers)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intdistill import cli, data
from intdistill.candidates import CandidateList, Candidates, encode_corpus, exact_search, first_stage
from intdistill.data import DataError, Passage, Query, Run


def _brute_force(q, p, k, metric):
    """Reference: full score matrix in float64, stable sort by (-score, index)."""
    q = np.asarray(q, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if metric == "cos":
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    s = q @ p.T
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(s, ids, axis=1)


# ---------------------------------------------------------------------------------------------- exact_search


@settings(max_examples=150, deadline=None)
@given(
    nq=st.integers(0, 7), n_pass=st.integers(1, 40), d=st.integers(1, 4), data_=st.data(),
    batch=st.sampled_from([None, 1, 3]), passage_block=st.sampled_from([None, 1, 2, 5, 16]),
    seed=st.integers(0, 2**31),
)
def test_exact_search_integer_scores_equal_stable_sort(nq, n_pass, d, data_, batch, passage_block, seed):
    """Small integer embeddings: exact float arithmetic and many ties, so ids must equal a stable full sort,
    also when the passages are tiled (ties at the k-th place across tiles)."""
    k = data_.draw(st.integers(1, n_pass))
    rng = np.random.default_rng(seed)
    q = rng.integers(-2, 3, (nq, d)).astype(np.float32)
    p = rng.integers(-2, 3, (n_pass, d)).astype(np.float32)
    ids, scores = exact_search(q, p, k, metric="ip", batch=batch, passage_block=passage_block)
    assert ids.shape == scores.shape == (nq, k)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    want_ids, want_scores = _brute_force(q, p, k, "ip")
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)


@settings(max_examples=100, deadline=None)
@given(
    nq=st.integers(0, 7), n_pass=st.integers(1, 40), d=st.integers(1, 6), data_=st.data(),
    metric=st.sampled_from(["cos", "ip"]), batch=st.sampled_from([None, 2]),
    passage_block=st.sampled_from([None, 3, 7]), seed=st.integers(0, 2**31),
)
def test_exact_search_matches_brute_force(nq, n_pass, d, data_, metric, batch, passage_block, seed):
    """Random embeddings: scores as float64 brute force; every id returned carries the score reported."""
    k = data_.draw(st.integers(1, n_pass))
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    p = rng.standard_normal((n_pass, d)).astype(np.float32) * rng.uniform(0.1, 3, (n_pass, 1)).astype(np.float32)
    ids, scores = exact_search(q, p, k, metric=metric, batch=batch, passage_block=passage_block)
    assert ids.shape == scores.shape == (nq, k)
    full_ids, full_scores = _brute_force(q, p, n_pass, metric)
    np.testing.assert_allclose(scores, full_scores[:, :k], rtol=1e-5, atol=1e-5)
    score_of = np.take_along_axis(full_scores, np.argsort(full_ids, axis=1), axis=1)  # (nq, n_pass) by passage id
    np.testing.assert_allclose(np.take_along_axis(score_of, ids, axis=1), scores, rtol=1e-5, atol=1e-5)
    for row in ids:
        assert len(set(row.tolist())) == k
    assert (np.diff(scores, axis=1) <= 0).all()


@settings(max_examples=80, deadline=None)
@given(
    nq=st.integers(1, 5), n_pass=st.integers(1, 30), d=st.integers(1, 5), data_=st.data(),
    metric=st.sampled_from(["cos", "ip"]), dtype=st.sampled_from(["float16", "int8"]),
    passage_block=st.sampled_from([None, 1, 4]), seed=st.integers(0, 2**31),
)
def test_exact_search_compact_passages_equal_their_float32(nq, n_pass, d, data_, metric, dtype, passage_block, seed):
    """float16 / int8 passages (an index's stored vectors, converted tile by tile) give exactly the result of
    the same values given as float32."""
    k = data_.draw(st.integers(1, n_pass))
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    p = (rng.standard_normal((n_pass, d)) * 3).astype(dtype)
    got = exact_search(q, p, k, metric=metric, passage_block=passage_block)
    want = exact_search(q, p.astype(np.float32), k, metric=metric, passage_block=passage_block)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_exact_search_hand_example():
    q = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    p = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.0]], dtype=np.float32)
    ids, scores = exact_search(q, p, 2, metric="ip")
    np.testing.assert_array_equal(ids, [[0, 2], [1, 2]])  # ip: q0·p = 2, 0, 1, .5; q1·p = 0, 2, 2, 0 (tie -> index)
    np.testing.assert_allclose(scores, [[2.0, 1.0], [2.0, 2.0]])
    ids, scores = exact_search(q, p, 3, metric="cos")
    np.testing.assert_array_equal(ids, [[0, 3, 2], [1, 2, 0]])  # ties (q0: p0 = p3 = 1; q1: p0 = p3 = 0) -> index
    np.testing.assert_allclose(scores, [[1.0, 1.0, np.sqrt(0.5)], [1.0, np.sqrt(0.5), 0.0]], atol=1e-6)


def test_exact_search_ties_lower_index_first():
    p = np.ones((6, 3), dtype=np.float32)
    for k in (1, 3, 6):
        ids, _ = exact_search(np.ones((2, 3), dtype=np.float32), p, k)
        np.testing.assert_array_equal(ids, np.tile(np.arange(k), (2, 1)))
    # a tie at the k-th place among many: values 3, 1 (x4, spread out), 2 -> k = 3 keeps 0, 5 and the first 1
    p = np.array([[3.0], [1.0], [1.0], [1.0], [1.0], [2.0]], dtype=np.float32)
    ids, scores = exact_search(np.ones((1, 1), dtype=np.float32), p[[1, 0, 2, 5, 3, 4]], 3, metric="ip")
    np.testing.assert_array_equal(ids, [[1, 3, 0]])
    np.testing.assert_array_equal(scores, [[3.0, 2.0, 1.0]])


def test_exact_search_cos_differs_from_ip_on_unnormalised():
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    p = np.array([[0.6, 0.8], [10.0, 10.0], [0.9, 0.1]], dtype=np.float32)
    assert exact_search(q, p, 1, metric="ip")[0][0, 0] == 1
    assert exact_search(q, p, 1, metric="cos")[0][0, 0] == 2
    pn = p / np.linalg.norm(p, axis=1, keepdims=True)
    for a, b in zip(exact_search(q, pn, 3, metric="ip"), exact_search(q, pn, 3, metric="cos")):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_exact_search_errors():
    q = np.zeros((2, 3), dtype=np.float32)
    p = np.ones((4, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"k: expected an int in \[1, 4\] \(the number of passages\), got 5"):
        exact_search(q, p, 5)
    with pytest.raises(ValueError, match="got 0"):
        exact_search(q, p, 0)
    with pytest.raises(ValueError, match="passage_emb is empty"):
        exact_search(q, np.zeros((0, 3), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="expected equal dimensions, got queries 3 and passages 2"):
        exact_search(q, np.ones((4, 2)), 1)
    with pytest.raises(ValueError, match="expected 2-D embeddings"):
        exact_search(q[0], p, 1)
    with pytest.raises(ValueError, match="metric: expected one of"):
        exact_search(q, p, 1, metric="l2")
    with pytest.raises(ValueError, match="passage_emb: expected finite values, got nan at row 2"):
        exact_search(q, np.array([[0, 0, 0], [1, 1, 1], [1, np.nan, 0]]), 1)
    with pytest.raises(ValueError, match="batch: expected an int >= 1, got 0"):
        exact_search(q, p, 1, batch=0)
    with pytest.raises(ValueError, match="passage_block: expected an int >= 1, got True"):
        exact_search(q, p, 1, passage_block=True)


# ---------------------------------------------------------------------------------------------- Candidates

def _cands():
    return Candidates({"q1": (["d2", "d1"], [0.9, 0.5]), "q é": (["d3"], [-1.25])}, retriever="some/model")


def test_candidates_jsonl_round_trip(tmp_path):
    c = _cands()
    path = c.save(tmp_path / "c.jsonl")
    lines = [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {"qid": "q1", "cands": ["d2", "d1"], "scores": [0.9, 0.5], "retriever": "some/model"}
    back = Candidates.load(path)
    assert back == c and list(back) == ["q1", "q é"] and back.retriever == "some/model"
    assert back["q1"] == CandidateList(("d2", "d1"), (0.9, 0.5))
    run = c.to_run()
    assert isinstance(run, Run) and run.tag == "model"
    assert run["q1"] == {"d2": 0.9, "d1": 0.5} and run.ranked("q1") == ["d2", "d1"]


@pytest.mark.parametrize(
    "lines,message",
    [
        (['{"qid": "a", "cands": ["x"], "scores": [1]}', "{oops"], r":2: expected a JSON object, got invalid JSON"),
        (['[1, 2]'], r":1: expected a JSON object, got list"),
        (['{"qid": "a", "scores": []}'], r":1: expected keys qid, cands, scores; missing cands"),
        (['{"qid": "a", "cands": ["x", "y"], "scores": [1]}'], r":1: expected as many scores as cands, got 1 and 2"),
        (['{"qid": "a", "cands": ["x", "x"], "scores": [1, 1]}'], r":1: cands: doc id 'x' listed twice"),
        (['{"qid": "a", "cands": [], "scores": []}', '', '{"qid": "a", "cands": [], "scores": []}'],
         r":3: qid 'a' appears twice"),
        (['{"qid": 1, "cands": [], "scores": []}'], r":1: qid: expected a string, got 1"),
        (['{"qid": "a", "cands": ["x"], "scores": ["1"]}'], r":1: scores: expected a list of finite numbers"),
        (['{"qid": "a", "cands": [], "scores": [], "retriever": "m1"}',
          '{"qid": "b", "cands": [], "scores": [], "retriever": "m2"}'], r":2: retriever: expected 'm1'"),
    ],
)
def test_candidates_load_errors_name_the_line(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=message):
        Candidates.load(path)


def test_candidates_constructor_checks():
    with pytest.raises(ValueError, match="2 candidates but 1 scores"):
        Candidates({"q": (["a", "b"], [1.0])})
    with pytest.raises(ValueError, match="candidate 'a' listed twice"):
        Candidates({"q": (["a", "a"], [1.0, 1.0])})


# ---------------------------------------------------------------------------------------------- first_stage

CORPUS = {
    f"d{i}": Passage(f"d{i}", text, title)
    for i, (title, text) in enumerate([
        ("Scurvy", "Scurvy is caused by a lack of vitamin C."),
        ("", "Vitamin D is made in the skin under sunlight."),
        ("Rust", "Rust is a systems programming language."),
        ("Python", "Python is a programming language with a large standard library."),
        ("Iron", "Iron oxide forms when iron reacts with oxygen and water."),
        ("", "Retrieval finds passages; ranking orders them."),
    ])
}
QUERIES = {
    "q1": Query("q1", "what causes scurvy"),
    "q2": Query("q2", "programming languages"),
    "q3": Query("q3", "how does iron rust"),
}


@pytest.fixture(scope="module")
def tiny_retriever(tiny_bert_dir):
    from intdistill.models import Retriever

    return Retriever.load(tiny_bert_dir, device="cpu")


def test_first_stage_matches_brute_force(tiny_retriever):
    cands = first_stage(tiny_retriever, CORPUS, QUERIES, 4, batch_size=2)
    assert list(cands) == ["q1", "q2", "q3"] and cands.retriever == tiny_retriever.name
    p = tiny_retriever.encode_passages([CORPUS[d].full_text() for d in CORPUS])
    q = tiny_retriever.encode_queries([QUERIES[x].text for x in QUERIES])
    want_ids, want_scores = _brute_force(q, p, 4, "ip")
    doc_ids = list(CORPUS)
    for row, qid in enumerate(QUERIES):
        assert cands[qid].docids == tuple(doc_ids[i] for i in want_ids[row])
        np.testing.assert_allclose(cands[qid].scores, want_scores[row], atol=1e-5)
    # another passage text changes what is encoded
    titles_only = first_stage(tiny_retriever, CORPUS, QUERIES, 4, passage_text=lambda psg: psg.title or psg.text)
    assert any(titles_only[qid].scores != cands[qid].scores for qid in QUERIES)


def test_first_stage_errors(tiny_retriever):
    with pytest.raises(ValueError, match="corpus is empty"):
        first_stage(tiny_retriever, {}, QUERIES, 1)
    with pytest.raises(ValueError, match=r"n: expected an int in \[1, 6\] \(the corpus size\), got 7"):
        first_stage(tiny_retriever, CORPUS, QUERIES, 7)
    assert len(first_stage(tiny_retriever, CORPUS, {}, 2)) == 0


def test_encode_corpus_cache(tiny_retriever, tmp_path, monkeypatch):
    first = encode_corpus(tiny_retriever, CORPUS, cache_dir=tmp_path)
    files = list(tmp_path.glob("passages-*.npy"))
    assert len(files) == 1 and np.load(files[0], allow_pickle=False).shape == (6, 32)

    def no_encoding(*a, **k):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(tiny_retriever, "encode_passages", no_encoding)
    np.testing.assert_array_equal(encode_corpus(tiny_retriever, CORPUS, cache_dir=tmp_path), first)
    monkeypatch.undo()
    changed = dict(CORPUS, d0=Passage("d0", "Something else entirely."))
    second = encode_corpus(tiny_retriever, changed, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("passages-*.npy"))) == 2
    np.testing.assert_allclose(second[1:], first[1:], atol=1e-6)  # other batch padding: float noise only
    assert not np.allclose(second[0], first[0])


# ---------------------------------------------------------------------------------------------- the command

def _read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def local_loaders(monkeypatch):
    """Stand-ins for intdistill.data's loaders (written on another branch): plain JSONL / TSV readers."""
    def load_corpus(path):
        return {r["_id"]: Passage(r["_id"], r["text"], r.get("title", "")) for r in _read_jsonl(path)}

    def load_queries(path):
        return {r["_id"]: Query(r["_id"], r["text"]) for r in _read_jsonl(path)}

    def load_qrels(path):
        qrels = data.Qrels()
        for line in open(path, encoding="utf-8").read().splitlines()[1:]:
            qid, doc, rel = line.split("\t")
            qrels.setdefault(qid, {})[doc] = int(rel)
        return qrels

    def save_run(run, path):
        with open(path, "w", encoding="utf-8") as f:
            for qid in run:
                for rank, doc in enumerate(run.ranked(qid), 1):
                    f.write(f"{qid} Q0 {doc} {rank} {run[qid][doc]} {run.tag}\n")

    for name, fn in [("load_corpus", load_corpus), ("load_queries", load_queries), ("load_qrels", load_qrels),
                     ("save_run", save_run)]:
        monkeypatch.setattr(data, name, fn, raising=False)


@pytest.fixture
def files(tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": p.id, "title": p.title, "text": p.text}) + "\n"
                              for p in CORPUS.values()), encoding="utf-8")
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": q.id, "text": q.text}) + "\n" for q in QUERIES.values()),
                       encoding="utf-8")
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\nq3\td4\t1\nq2\td2\t1\nq2\td3\t1\nq9\td1\t1\n", encoding="utf-8")
    return corpus, queries, qrels


def test_candidates_command_jsonl_and_qrels(local_loaders, files, tiny_bert_dir, tiny_retriever, tmp_path, capsys):
    corpus, queries, qrels = files
    out = tmp_path / "cands.jsonl"
    rc = cli.main(["candidates", "--corpus", str(corpus), "--queries", str(queries), "-n", "3", "--out", str(out),
                   "--retriever", str(tiny_bert_dir), "--qrels", str(qrels), "--batch-size", "2", "--device", "cpu"])
    assert rc == 0
    got = Candidates.load(out)
    assert list(got) == ["q2", "q3"]  # judged queries only, in query-file order
    want = first_stage(tiny_retriever, CORPUS, {q: QUERIES[q] for q in ("q2", "q3")}, 3)
    assert got.retriever == want.retriever == str(tiny_bert_dir)
    for qid in want:
        assert got[qid].docids == want[qid].docids
        np.testing.assert_allclose(got[qid].scores, want[qid].scores, atol=1e-6)
    err = capsys.readouterr().err
    assert "2 queries x 3 candidates from 6 passages" in err
    found = sum(d in got[q].docids for q, d in [("q3", "d4"), ("q2", "d2"), ("q2", "d3")])
    assert f"judged-relevant documents among the candidates: {found}/3" in err


def test_candidates_command_trec_and_max_queries(local_loaders, files, tiny_bert_dir, tmp_path):
    corpus, queries, _ = files
    out = tmp_path / "cands.trec"
    rc = cli.main(["candidates", "--corpus", str(corpus), "--queries", str(queries), "-n", "2", "--out", str(out),
                   "--retriever", str(tiny_bert_dir), "--max-queries", "2", "--device", "cpu"])
    assert rc == 0
    rows = [line.split() for line in out.read_text().splitlines()]
    assert [r[0] for r in rows] == ["q1", "q1", "q2", "q2"]
    assert [r[3] for r in rows] == ["1", "2", "1", "2"]
    assert all(r[1] == "Q0" and r[2] in CORPUS for r in rows)


def test_candidates_command_bad_input_exit_2(local_loaders, files, tiny_bert_dir, tmp_path, capsys):
    corpus, queries, _ = files
    args = ["candidates", "--corpus", str(corpus), "--queries", str(queries), "--out", str(tmp_path / "c.jsonl"),
            "--retriever", str(tiny_bert_dir), "--device", "cpu"]
    assert cli.main(args + ["-n", "7"]) == 2
    assert "expected at least -n 7 passages, got 6" in capsys.readouterr().err
    no_judged = tmp_path / "none.tsv"
    no_judged.write_text("query-id\tcorpus-id\tscore\nzz\td1\t1\n", encoding="utf-8")
    assert cli.main(args + ["-n", "2", "--qrels", str(no_judged)]) == 2
    assert "expected at least one query to retrieve for, got none" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(args + ["-n", "0"])


# ---------------------------------------------------------------------------------------------- hybrid


def test_lexical_rescore_hand_example():
    """20·cos + W·bm25/max_q, by hand. Corpus: a = "red apple", b = "green apple", c = "blue sky". Query
    "red apple": idf(red) = ln(1 + 2.5/1.5), idf(appl) = ln(1 + 1.5/2.5) (Lucene's), every passage 2 terms long
    (avgdl 2), so each matched term scores tf / (tf + k1) = 1 / 2.5 = 0.4 of its idf."""
    import math

    from intdistill.candidates import lexical_rescore
    from intdistill.lexical import BM25

    corpus = {"a": Passage("a", "red apple"), "b": Passage("b", "green apple"), "c": Passage("c", "blue sky")}
    bm25 = BM25.fit(p.full_text() for p in corpus.values())
    cands = Candidates({"q": CandidateList(("c", "b", "a"), (0.9, 0.8, 0.7), "red apple")}, "mini")
    got = lexical_rescore(cands, corpus, 15.0, 3, bm25=bm25)
    red, appl = math.log(1 + 2.5 / 1.5), math.log(1 + 1.5 / 2.5)
    want = {"c": 20 * 0.9, "b": 20 * 0.8 + 15 * 0.4 * appl / (red + appl), "a": 20 * 0.7 + 15 * 0.4}
    assert got["q"].docids == ("a", "c", "b")  # a 20.0 (both words), c 18.0 (none), b 17.94 (apple only)
    assert got.retriever == "mini+bm25x15"
    np.testing.assert_allclose(got["q"].scores, [want[d] for d in got["q"].docids], rtol=1e-12)
    assert got["q"].query == "red apple"
    # weight 0: the dense order, cut; the scores only scaled
    zero = lexical_rescore(cands, corpus, 0.0, 2)
    assert zero["q"].docids == ("c", "b") and zero.retriever == "mini"
    np.testing.assert_allclose(zero["q"].scores, (18.0, 16.0))
    # fitted on the corpus when not given: the same
    assert lexical_rescore(cands, corpus, 15.0, 3)["q"].docids == got["q"].docids
    with pytest.raises(ValueError, match="lexical weight: expected a finite number >= 0"):
        lexical_rescore(cands, corpus, -1.0, 3)
    with pytest.raises(ValueError, match="n: expected an int >= 1"):
        lexical_rescore(cands, corpus, 1.0, 0)
    stray = Candidates({"q": CandidateList(("zz",), (0.5,), "red")}, "mini")
    with pytest.raises(DataError, match="candidate 'zz' is not in the corpus"):
        lexical_rescore(stray, corpus, 1.0, 1)


def test_candidates_command_lexical_weight(local_loaders, files, tiny_bert_dir, tiny_retriever, tmp_path, capsys):
    """--lexical-weight: the dense top --lexical-pool re-scored (lexical_rescore) and cut to -n."""
    from intdistill.candidates import lexical_rescore

    corpus, queries, _ = files
    out = tmp_path / "hybrid.jsonl"
    rc = cli.main(["candidates", "--corpus", str(corpus), "--queries", str(queries), "-n", "2", "--out", str(out),
                   "--retriever", str(tiny_bert_dir), "--device", "cpu", "--lexical-weight", "30",
                   "--lexical-pool", "5"])
    assert rc == 0
    got = Candidates.load(out)
    want = lexical_rescore(first_stage(tiny_retriever, CORPUS, QUERIES, 5), CORPUS, 30.0, 2)
    assert list(got) == list(want)
    for qid in want:
        assert got[qid].docids == want[qid].docids
        np.testing.assert_allclose(got[qid].scores, want[qid].scores, atol=2e-5)
    assert "hybrid: the dense top 5 re-scored by 20 x cosine + 30 x BM25 / max_q" in capsys.readouterr().err
    # a pool larger than the corpus is the corpus
    assert cli.main(["candidates", "--corpus", str(corpus), "--queries", str(queries), "-n", "2", "--out",
                     str(tmp_path / "h2.jsonl"), "--retriever", str(tiny_bert_dir), "--device", "cpu",
                     "--lexical-weight", "1"]) == 0
    for bad in ("-1", "nan", "x"):
        with pytest.raises(SystemExit):
            cli.main(["candidates", "--corpus", str(corpus), "--queries", str(queries), "-n", "2", "--out",
                      str(tmp_path / "h3.jsonl"), "--lexical-weight", bad])
    assert "--lexical-weight: expected a finite number >= 0, got 'x'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- real data

@pytest.mark.slow
def test_first_stage_minilm_scifact_matches_sentence_transformers(shared_data_dir, minilm_dir):
    """60 SciFact abstracts, 5 claims: same top-10 as sentence-transformers' embeddings + brute force."""
    from sentence_transformers import SentenceTransformer

    from intdistill.models import Retriever

    corpus = {}
    with open(shared_data_dir / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            corpus[r["_id"]] = Passage(r["_id"], r["text"], r["title"])
            if len(corpus) == 60:
                break
    queries = {}
    with open(shared_data_dir / "scifact" / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            queries[r["_id"]] = Query(r["_id"], r["text"])
            if len(queries) == 5:
                break
    cands = first_stage(Retriever.load(device="cpu"), corpus, queries, 10, batch_size=32)
    st_model = SentenceTransformer(str(minilm_dir), device="cpu")
    p = st_model.encode([c.full_text() for c in corpus.values()], batch_size=32, convert_to_numpy=True)
    q = st_model.encode([x.text for x in queries.values()], convert_to_numpy=True)
    want_ids, want_scores = _brute_force(q, p, 10, "ip")
    doc_ids = list(corpus)
    for row, qid in enumerate(queries):
        np.testing.assert_allclose(cands[qid].scores, want_scores[row], atol=1e-4)
        # identical lists except where two scores are within float noise
        got, want = cands[qid].docids, tuple(doc_ids[i] for i in want_ids[row])
        if got != want:
            assert set(got[:9]) <= set(want) and np.min(np.diff(want_scores[row])) > -1e-4
