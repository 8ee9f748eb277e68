"""DenseIndex (usearch HNSW): build / save / load / mmap, ANN vs exact, storage types, retriever checks, bad
input, the ``intdistill index`` and ``intdistill search`` commands, and real MiniLM on SciFact."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from intdistill import cli, data
from intdistill.candidates import encode_corpus, exact_search
from intdistill.data import DataError, Passage
from intdistill.metrics import ann_recall
from intdistill.index import DOCIDS_FILE, INDEX_FILE, META_FILE, DenseIndex, RetrieverMismatchError

WORDS = ("protein cell gene virus cancer brain heart sleep diet exercise vaccine immune blood drug dose trial "
         "mouse human child aging memory stress insulin liver lung bone muscle fever pain risk").split()


def _corpus(n: int = 40) -> dict[str, Passage]:
    rng = np.random.default_rng(7)
    corpus = {}
    for i in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(5, 15)))
        corpus[f"doc{i}"] = Passage(f"doc{i}", " ".join(words), title=f"Title {i}" if i % 3 else "")
    return corpus


QUERY_TEXTS = ["gene therapy for cancer", "sleep and memory in children", "vaccine dose trial", "liver insulin risk",
               "muscle pain after exercise", "blood pressure drug"]


@pytest.fixture(scope="session")
def tiny(tiny_bert_dir):
    from intdistill.models import Retriever

    return Retriever.load(tiny_bert_dir, device="cpu")


@pytest.fixture(scope="session")
def corpus():
    return _corpus()


@pytest.fixture(scope="session")
def built(tiny, corpus):
    return DenseIndex.build(tiny, corpus, progress=False)


def _cos(q, p):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    return q @ p.T


# ---------------------------------------------------------------------------------------------- build / persist


def test_build_records_meta_and_recall(built, tiny, corpus):
    m = built.meta
    assert len(built) == m.count == len(corpus) and built.docids == list(corpus)
    assert (m.dim, m.metric, m.dtype) == (32, "cos", "f32")  # tiny retriever normalises -> cos
    assert m.retriever_fingerprint == tiny.fingerprint() and m.retriever_path == os.path.abspath(tiny.name)
    assert m.check_source == "passages" and m.check_queries == len(corpus) and m.check_k == 10
    assert m.check_recall == 1.0  # 40 passages: HNSW is exhaustive
    assert m.usearch_version and m.intdistill_version and m.build_seconds >= 0


def test_save_load_mmap_round_trip(built, tiny, tmp_path):
    q = tiny.encode_queries(QUERY_TEXTS)
    out = built.save(tmp_path / "idx")
    assert sorted(p.name for p in out.iterdir()) == sorted([INDEX_FILE, DOCIDS_FILE, META_FILE])
    assert json.loads((out / DOCIDS_FILE).read_text()) == built.docids
    meta = json.loads((out / META_FILE).read_text())
    assert meta["dim"] == 32 and meta["retriever_fingerprint"] == tiny.fingerprint() and meta["format"] == 1
    want = built.search(q, 7)
    for mmap in (False, True):
        loaded = DenseIndex.load(out, mmap=mmap)
        assert loaded.meta == built.meta and loaded.docids == built.docids
        got = loaded.search(q, 7)
        assert got.docids == want.docids
        np.testing.assert_array_equal(got.scores, want.scores)
        assert loaded.search_text(tiny, QUERY_TEXTS, 7).docids == want.docids
    # saving again over an existing directory works, and a viewed (read-only) index saves too
    DenseIndex.load(out, mmap=True).save(tmp_path / "copy")
    assert DenseIndex.load(tmp_path / "copy").search(q, 7).docids == want.docids


@pytest.mark.parametrize("metric", ["cos", "ip"])
def test_ann_equals_exact_and_scores_are_similarities(tiny, corpus, metric):
    index = DenseIndex.build(tiny, corpus, metric=metric, progress=False)
    p = encode_corpus(tiny, corpus)
    q = tiny.encode_queries(QUERY_TEXTS)
    ids, scores = index.search_ids(q, 10)
    want_ids, want_scores = exact_search(q, p, 10, metric=metric)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    sim = _cos(q, p) if metric == "cos" else q @ p.T  # score = similarity, higher = better
    np.testing.assert_allclose(scores, np.take_along_axis(sim, ids, axis=1), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-7).all()
    hits = index.search_exact(q, 10)
    assert hits.docids == [[index.docids[i] for i in row] for row in want_ids]
    assert index.search_text(tiny, QUERY_TEXTS, 10).docids == hits.docids


def test_hand_example_scores():
    # cos(q, p) = 1, 0.6, 0 (p1 has norm 1); with query 3q the inner products are 6, 1.8, 0
    p = np.array([[2.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    q = np.array([[1.0, 0.0]], dtype=np.float32)
    cos = DenseIndex.from_embeddings(p, ["a", "b", "c"], metric="cos", check_sample=0)
    hits = cos.search(q, 3)
    assert hits.docids == [["a", "b", "c"]]
    np.testing.assert_allclose(hits.scores, [[1.0, 0.6, 0.0]], atol=1e-6)
    np.testing.assert_allclose(cos.search(q * 5, 1).scores, [[1.0]], atol=1e-6)  # cosine ignores norms
    np.testing.assert_allclose(cos.search(np.zeros((1, 2), dtype=np.float32), 3).scores, [[0.0] * 3])
    assert cos.meta.usearch_metric == "ip"  # unit vectors searched by inner product
    ip = DenseIndex.from_embeddings(p, ["a", "b", "c"], metric="ip", check_sample=0)
    np.testing.assert_allclose(ip.search(q * 3, 2).scores, [[6.0, 1.8]], atol=1e-5)
    assert cos.meta.check_recall is None and cos.meta.check_queries == 0


@pytest.mark.parametrize("dtype", ["f16", "bf16", "i8"])
def test_quantised_dtypes_report_recall(tiny, corpus, dtype, tmp_path):
    q = tiny.encode_queries(QUERY_TEXTS)
    index = DenseIndex.build(tiny, corpus, dtype=dtype, progress=False, check_queries=q)
    m = index.meta
    assert m.dtype == dtype and m.check_source == "queries" and m.check_queries == len(QUERY_TEXTS)
    assert 0.8 <= m.check_recall <= 1.0
    loaded = DenseIndex.load(index.save(tmp_path / dtype))
    assert loaded.dtype == dtype and loaded.search(q, 5).docids == index.search(q, 5).docids
    exact = exact_search(q, encode_corpus(tiny, corpus), 5)[0]
    assert ann_recall(index.search_ids(q, 5)[0], exact, 5) >= 0.8
    assert abs(index.search(q, 1).scores[0, 0] - _cos(q, encode_corpus(tiny, corpus)).max(axis=1)[0]) < 0.05


def test_i8_needs_cos():
    with pytest.raises(ValueError, match="i8.*cos"):
        DenseIndex.from_embeddings(np.eye(3, dtype=np.float32), ["a", "b", "c"], metric="ip", dtype="i8")


def test_bad_options_and_k():
    emb = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="metric: expected one of cos, ip, got 'l2'"):
        DenseIndex.from_embeddings(emb, ["a", "b", "c"], metric="l2")
    with pytest.raises(ValueError, match="dtype"):
        DenseIndex.from_embeddings(emb, ["a", "b", "c"], dtype="f64")
    with pytest.raises(ValueError, match="one doc id per embedding row, got 2 ids and 3 rows"):
        DenseIndex.from_embeddings(emb, ["a", "b"])
    with pytest.raises(ValueError, match="'a' appears twice"):
        DenseIndex.from_embeddings(emb, ["a", "b", "a"])
    with pytest.raises(ValueError, match="finite"):
        DenseIndex.from_embeddings(np.array([[1.0, np.nan]], dtype=np.float32), ["a"])
    index = DenseIndex.from_embeddings(emb, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"k: expected an int in \[1, 3\], got 4"):
        index.search(emb, 4)
    with pytest.raises(ValueError, match=r"expected dimension 3 \(the index's\), got 2"):
        index.search(np.ones((1, 2), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="2-D"):
        index.search(np.ones(3, dtype=np.float32), 1)
    assert index.search(np.empty((0, 3), dtype=np.float32), 2).docids == []


def test_metric_follows_retriever_normalisation(tiny_bert_dir, corpus):
    from intdistill.models import Retriever

    raw = Retriever.load(tiny_bert_dir, normalize=False, device="cpu")
    index = DenseIndex.build(raw, corpus, progress=False, check_sample=5)
    assert index.metric == "ip" and index.meta.retriever_normalize is False and index.meta.check_queries == 5


def test_empty_corpus(tiny):
    with pytest.raises(ValueError, match="corpus is empty"):
        DenseIndex.build(tiny, {}, progress=False)
    with pytest.raises(ValueError, match="non-empty 2-D"):
        DenseIndex.from_embeddings(np.empty((0, 4), dtype=np.float32), [])


# ---------------------------------------------------------------------------------------------- retriever checks


def test_dimension_mismatch_names_both_dims(tiny):
    index = DenseIndex.from_embeddings(np.random.default_rng(0).standard_normal((5, 16)), list("abcde"))
    with pytest.raises(ValueError, match=r"gives 32-d embeddings but the index holds 16-d"):
        index.search_text(tiny, ["a query"], 3)


def test_fingerprint_mismatch_raises_unless_allowed(built, tiny_bert_dir, caplog):
    from intdistill.models import Retriever

    other = Retriever.load(tiny_bert_dir, max_length=16, device="cpu")  # same weights, other configuration
    with pytest.raises(RetrieverMismatchError, match="allow_mismatch=True"):
        built.search_text(other, QUERY_TEXTS, 3)
    with caplog.at_level(logging.WARNING, logger="intdistill.index"):
        hits = built.search_text(other, QUERY_TEXTS, 3, allow_mismatch=True)
    assert len(hits.docids) == len(QUERY_TEXTS) and "searching anyway" in caplog.text


# ---------------------------------------------------------------------------------------------- missing / bad files


def test_missing_and_bad_files(built, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"index directory .*nope not found; expected a directory written by"):
        DenseIndex.load(tmp_path / "nope")
    out = built.save(tmp_path / "idx")
    for name in (INDEX_FILE, DOCIDS_FILE, META_FILE):
        broken = built.save(tmp_path / f"no-{name}")
        (broken / name).unlink()
        with pytest.raises(FileNotFoundError, match=rf"{name} not found; expected .*index.usearch"):
            DenseIndex.load(broken)
    (out / DOCIDS_FILE).write_text(json.dumps(built.docids[:-1]))
    with pytest.raises(DataError, match=rf"expected {len(built)} doc ids \(meta.json count\), got {len(built) - 1}"):
        DenseIndex.load(out)
    out = built.save(tmp_path / "idx2")
    (out / INDEX_FILE).write_bytes(b"not an index" * 10)
    with pytest.raises(DataError, match="expected a usearch index file"):
        DenseIndex.load(out)
    out = built.save(tmp_path / "idx3")
    meta = json.loads((out / META_FILE).read_text())
    (out / META_FILE).write_text(json.dumps({**meta, "dim": 64}))
    with pytest.raises(DataError, match=r"expected \(dim, count, dtype, usearch metric\) = \(64"):
        DenseIndex.load(out)
    (out / META_FILE).write_text("{broken")
    with pytest.raises(DataError, match="invalid JSON"):
        DenseIndex.load(out)


# ---------------------------------------------------------------------------------------------- CLI


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path, corpus):
    rows = [{"_id": p.id, "title": p.title, "text": p.text} for p in corpus.values()]
    c = _write_jsonl(tmp_path / "corpus.jsonl", rows)
    q = _write_jsonl(tmp_path / "queries.jsonl", [{"_id": f"q{i}", "text": t} for i, t in enumerate(QUERY_TEXTS)])
    return c, q


def test_cli_index_and_search(tiny_bert_dir, tiny, files, tmp_path, capsys):
    corpus_file, queries_file = files
    idx = tmp_path / "idx"
    assert cli.main(["index", "--retriever", str(tiny_bert_dir), "--corpus", str(corpus_file), "--out", str(idx),
                     "--queries", str(queries_file), "--dtype", "f16"]) == 0
    err = capsys.readouterr().err
    assert "40 passages x 32-d (cos, f16)" in err and "build" in err and "MB" in err
    assert f"recall@10 vs exact search: 1.0000 on {len(QUERY_TEXTS)} sampled queries" in err
    index = DenseIndex.load(idx)
    assert index.dtype == "f16" and index.meta.retriever_fingerprint == tiny.fingerprint()

    # one text, retriever taken from meta.json, passages shown
    assert cli.main(["search", "--index", str(idx), "-k", "3", "--corpus", str(corpus_file), "--words", "4",
                     QUERY_TEXTS[0]]) == 0
    lines = capsys.readouterr().out.splitlines()
    want = index.search_text(tiny, QUERY_TEXTS[:1], 3)
    assert [line.split("\t")[:3] for line in lines] == [
        [str(r), d, f"{s:.4f}"] for r, (d, s) in enumerate(zip(want.docids[0], want.scores[0].tolist()), 1)
    ]
    corpus = data.load_corpus(corpus_file)
    first = corpus[want.docids[0][0]].full_text().split()
    assert lines[0].split("\t")[3] == " ".join(first[:4]) + (" ..." if len(first) > 4 else "")

    # two texts: a header per query
    assert cli.main(["search", "--index", str(idx), "-k", "2", *QUERY_TEXTS[:2]]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"query 1: {QUERY_TEXTS[0]}\n1\t") and f"\n\nquery 2: {QUERY_TEXTS[1]}\n" in out

    # queries file -> TREC run, equal to the library's results
    run_file = tmp_path / "run.trec"
    assert cli.main(["search", "--index", str(idx), "--retriever", str(tiny_bert_dir), "--queries", str(queries_file),
                     "-k", "5", "--out", str(run_file), "--mmap"]) == 0
    run = data.load_run(run_file)
    want = index.search_text(tiny, QUERY_TEXTS, 5)
    assert list(run) == [f"q{i}" for i in range(len(QUERY_TEXTS))]
    for i, qid in enumerate(run):
        assert set(run[qid]) == set(want.docids[i])
        np.testing.assert_allclose(sorted(run[qid].values(), reverse=True), want.scores[i], atol=1e-6)
    # --exact: usearch's exhaustive search gives the same top 5 on this small corpus
    exact_file = tmp_path / "exact.trec"
    assert cli.main(["search", "--index", str(idx), "--queries", str(queries_file), "-k", "5", "--exact",
                     "--out", str(exact_file)]) == 0
    assert {q: set(d) for q, d in data.load_run(exact_file).items()} == {q: set(d) for q, d in run.items()}


def test_cli_search_lexical_weight(tiny_bert_dir, tiny, files, tmp_path, capsys):
    """search --lexical-weight: the index's top --lexical-pool re-scored by lexical_rescore over the index's
    recorded corpus (or --corpus), cut to -k; the same lists as the library's."""
    from intdistill.candidates import Candidates, lexical_rescore
    from intdistill.stages import OpenIndex, search

    corpus_file, queries_file = files
    idx = tmp_path / "idx"
    assert cli.main(["index", "--retriever", str(tiny_bert_dir), "--corpus", str(corpus_file), "--out", str(idx),
                     "--check-sample", "0"]) == 0
    run_file = tmp_path / "hybrid.jsonl"
    assert cli.main(["search", "--index", str(idx), "--queries", str(queries_file), "-k", "3", "--out",
                     str(run_file), "--exact", "--lexical-weight", "30", "--lexical-pool", "8"]) == 0
    err = capsys.readouterr().err
    assert "hybrid: the dense top 8 re-scored by 20 x cosine + 30 x BM25 / max_q" in err
    assert f"BM25 statistics saved with the index ({idx / 'intdistill_lexical.json'})" in err  # not refitted
    corpus = data.load_corpus(corpus_file)
    queries = data.load_queries(queries_file)
    want = lexical_rescore(search(OpenIndex(DenseIndex.load(idx), tiny), queries, 8, exact=True, progress=False),
                           corpus, 30.0, 3)
    got = Candidates.load(run_file)
    assert [got[q].docids for q in want] == [want[q].docids for q in want]
    assert any(got[q].docids != search(OpenIndex(DenseIndex.load(idx), tiny), {q: queries[q]}, 3, exact=True,
                                       progress=False)[q].docids for q in want)  # BM25 moved something
    # TEXT with --corpus: printed in the hybrid order
    assert cli.main(["search", "--index", str(idx), "-k", "2", "--exact", "--lexical-weight", "30",
                     "--lexical-pool", "8", "--corpus", str(corpus_file), QUERY_TEXTS[0]]) == 0
    first = next(iter(want))
    assert [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()] == list(want[first].docids[:2])
    with pytest.raises(SystemExit):
        cli.main(["search", "--index", str(idx), "--lexical-weight", "-3", "text"])


def test_index_saves_bm25_statistics_that_search_loads_or_refits(tiny_bert_dir, files, tmp_path, capsys, caplog):
    """`intdistill index` saves the corpus's BM25 statistics with the index; the hybrid commands load them for
    the recorded corpus and fit them anew for another corpus, a damaged file or one fitted on other passages,
    with the same lists each time."""
    from intdistill.lexical import BM25
    from intdistill.stages.judge import index_bm25

    corpus_file, queries_file = files
    idx = tmp_path / "idx"
    assert cli.main(["index", "--retriever", str(tiny_bert_dir), "--corpus", str(corpus_file), "--out", str(idx),
                     "--check-sample", "0"]) == 0
    assert "BM25 statistics" in capsys.readouterr().err
    corpus = data.load_corpus(corpus_file)
    fitted = BM25.fit(p.full_text() for p in corpus.values())
    assert BM25.load(idx).to_json() == fitted.to_json()
    index = DenseIndex.load(idx)
    bm25, how = index_bm25(index, idx, corpus)
    assert how.startswith("BM25 statistics saved with the index") and bm25.to_json() == fitted.to_json()
    assert index_bm25(index, idx, corpus, str(corpus_file))[1].startswith("BM25 statistics saved")  # same file

    def hybrid_run(*extra):
        out = tmp_path / "h.trec"
        assert cli.main(["search", "--index", str(idx), "--queries", str(queries_file), "-k", "3", "--out", str(out),
                         "--exact", "--lexical-weight", "30", "--lexical-pool", "8", *extra]) == 0
        return {q: list(d) for q, d in data.load_run(out).items()}, capsys.readouterr().err

    want, err = hybrid_run()
    assert "saved with the index" in err
    copy = tmp_path / "elsewhere.jsonl"  # another file (it could hold other texts): fitted on it
    copy.write_text(corpus_file.read_text())
    got, err = hybrid_run("--corpus", str(copy))
    assert got == want and f"BM25 fitted on the {len(corpus)} passages" in err
    # statistics of other passages (fewer of them): fitted anew
    BM25.fit(p.full_text() for p in list(corpus.values())[:3]).save(idx)
    assert index_bm25(index, idx, corpus)[1].startswith(f"BM25 fitted on the {len(corpus)} passages")
    # a damaged file: a warning naming it, then fitted; the lists are the same
    (idx / "intdistill_lexical.json").write_text("{not json")
    with caplog.at_level("WARNING"):
        got, err = hybrid_run()
    assert got == want and "BM25 fitted on the" in err
    assert "intdistill_lexical.json: not valid JSON" in caplog.text
    assert "fitting BM25 on the corpus instead" in caplog.text


def test_cli_bad_input_exits_2(tiny_bert_dir, tiny, files, tmp_path, capsys):
    corpus_file, queries_file = files
    idx = tmp_path / "idx"
    assert cli.main(["index", "--retriever", str(tiny_bert_dir), "--corpus", str(corpus_file), "--out", str(idx),
                     "--check-sample", "0"]) == 0
    assert "recall check skipped" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cases = [
        (["index", "--corpus", str(empty), "--out", str(tmp_path / "x")], "expected at least one passage"),
        (["index", "--corpus", str(corpus_file), "--out", str(tmp_path / "x"), "--dtype", "i8", "--metric", "ip"],
         "i8 needs --metric cos"),
        (["search", "--index", str(tmp_path / "missing"), "text"], "not found"),
        (["search", "--index", str(idx)], "got neither"),
        (["search", "--index", str(idx), "--queries", str(queries_file)], "--queries needs --out"),
        (["search", "--index", str(idx), "-k", "41", "text"], "expected -k at most 40"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        assert message in capsys.readouterr().err
    # a retriever with another configuration: refused, unless allowed
    other = tmp_path / "other"
    from intdistill.models import Retriever

    Retriever.load(tiny_bert_dir, max_length=16, device="cpu").save(other)
    assert cli.main(["search", "--index", str(idx), "--retriever", str(other), "text"]) == 2
    assert "--allow-retriever-mismatch" in capsys.readouterr().err
    assert cli.main(["search", "--index", str(idx), "--retriever", str(other), "--allow-retriever-mismatch",
                     "text"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 10


# ---------------------------------------------------------------------------------------------- real model, real data


def test_minilm_scifact_index_matches_exact_search(minilm_dir, shared_data_dir, tmp_path):
    """Real MiniLM (passages truncated to 128 tokens to keep this test short), 200 SciFact abstracts, 100
    claims: HNSW top-10 equals exact top-10 for (nearly) every query."""
    from intdistill.models import Retriever

    corpus = data.load_corpus(shared_data_dir / "scifact")
    corpus = {d: corpus[d] for d in list(corpus)[:200]}
    queries = data.load_queries(shared_data_dir / "scifact")
    texts = [q.text for q in list(queries.values())[:100]]
    retriever = Retriever.load(minilm_dir, max_length=128, device="cpu")
    q = retriever.encode_queries(texts)
    index = DenseIndex.build(retriever, corpus, progress=False, check_queries=q, cache_dir=tmp_path)
    assert index.meta.dim == 384 and index.metric == "cos" and index.meta.check_recall >= 0.98
    p = encode_corpus(retriever, corpus, cache_dir=tmp_path)  # from the cache the build wrote
    exact_ids, exact_scores = exact_search(q, p, 10)
    ids, scores = index.search_ids(q, 10)
    assert ann_recall(ids, exact_ids, 10) >= 0.98
    np.testing.assert_allclose(scores[:, 0], exact_scores[:, 0], atol=1e-5)
    assert index.search_text(retriever, texts[:20], 10).docids == [[index.docids[i] for i in row] for row in ids[:20]]


# ---------------------------------------------------------------------------------------------- target recall


def _hard(n: int = 4000, dim: int = 48, seed: int = 3) -> np.ndarray:
    """Uniform unit vectors: the hardest case for HNSW, so a tiny ef misses many true neighbours."""
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_target_recall_doubles_ef_until_the_check_meets_it(tmp_path, caplog):
    emb = _hard()
    ids = [f"d{i}" for i in range(len(emb))]
    plain = DenseIndex.from_embeddings(emb, ids, connectivity=8, expansion_add=32, expansion_search=4,
                                       check_sample=300)
    assert plain.meta.check_recall < 0.9 and plain.meta.target_recall is None and plain.meta.tuned_from is None
    with caplog.at_level(logging.INFO, logger="intdistill.index"):
        tuned = DenseIndex.from_embeddings(emb, ids, connectivity=8, expansion_add=32, expansion_search=4,
                                           check_sample=300, target_recall=0.97)
    m = tuned.meta
    assert m.check_recall >= 0.97 and m.target_recall == 0.97 and m.tuned_from == 4
    # the ef found is a doubling of the one asked for, and the one just below it missed the target
    assert m.expansion_search in (8, 16, 32, 64, 128, 256, 512) and tuned.expansion_search == m.expansion_search
    sample = emb[np.sort(np.random.default_rng(0).choice(len(emb), 300, replace=False))]  # the check's sample
    tuned.expansion_search = m.expansion_search // 2
    assert tuned.recall(sample, emb) < 0.97
    tuned.expansion_search = m.expansion_search
    assert f"ef {m.expansion_search} gives" in caplog.text
    # the ef found travels with the saved index, and its searches reach the recall measured
    loaded = DenseIndex.load(tuned.save(tmp_path / "idx"))
    assert loaded.expansion_search == m.expansion_search and loaded.meta.target_recall == 0.97
    assert loaded.recall(sample, emb) == pytest.approx(m.check_recall)
    # already met at the ef asked for: nothing raised, tuned_from stays None
    easy = DenseIndex.from_embeddings(emb, ids, connectivity=8, expansion_add=32, expansion_search=512,
                                      check_sample=300, target_recall=0.5)
    assert easy.expansion_search == 512 and easy.meta.tuned_from is None and easy.meta.target_recall == 0.5


def test_target_recall_missed_at_the_cap_is_a_warning(monkeypatch, caplog):
    import intdistill.index as index_mod

    monkeypatch.setattr(index_mod, "MAX_TUNED_EF", 8)
    emb = _hard()
    with caplog.at_level(logging.WARNING, logger="intdistill.index"):
        idx = DenseIndex.from_embeddings(emb, [str(i) for i in range(len(emb))], connectivity=4, expansion_add=8,
                                         expansion_search=2, check_sample=200, target_recall=0.999)
    assert idx.expansion_search == 8 and idx.meta.check_recall < 0.999 and idx.meta.tuned_from == 2
    assert "target recall@10 0.999 not reached" in caplog.text and "denser graph" in caplog.text


@pytest.mark.parametrize("kwargs, message", [
    ({"target_recall": 0}, r"target_recall: expected a number in \(0, 1\], got 0"),
    ({"target_recall": 1.5}, r"got 1\.5"),
    ({"target_recall": True}, r"got True"),
    ({"target_recall": 0.9, "check_sample": 0}, "target_recall needs the recall check"),
])
def test_target_recall_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DenseIndex.from_embeddings(_hard(50, 8), [str(i) for i in range(50)], **kwargs)


def test_cli_index_target_recall(tiny_bert_dir, files, tmp_path, capsys):
    corpus_file, queries_file = files
    base = ["index", "--retriever", str(tiny_bert_dir), "--corpus", str(corpus_file), "--out", str(tmp_path / "i")]
    assert cli.main([*base, "--queries", str(queries_file), "--expansion-search", "2", "--target-recall", "1"]) == 0
    err = capsys.readouterr().err
    meta = DenseIndex.load(tmp_path / "i").meta
    assert meta.check_recall == 1.0 and meta.target_recall == 1.0
    assert f"at ef {meta.expansion_search}" in err and "target recall 1: reached;" in err
    assert cli.main([*base, "--target-recall", "0.9", "--check-sample", "0"]) == 2
    assert "--target-recall needs the recall check: expected --check-sample >= 1, got 0" in capsys.readouterr().err
    for bad in ("1.5", "0", "x"):  # argparse: usage error, exit 2
        with pytest.raises(SystemExit) as e:
            cli.main([*base, "--target-recall", bad])
        assert e.value.code == 2 and f"expected a number in (0, 1], got '{bad}'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- exact search


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16", "i8"])
def test_exact_search_over_stored_vectors_matches_usearch_exhaustive(dtype, tmp_path):
    """search_ids(exact=True) scores the stored (quantised) vectors with exact_search; the peer is usearch's
    own exhaustive search over the same index: same ids, same scores; a memory-mapped copy answers the same."""
    from intdistill.index import _prepare

    rng = np.random.default_rng(5)
    emb = rng.standard_normal((600, 16)).astype(np.float32)
    q = rng.standard_normal((25, 16)).astype(np.float32)
    idx = DenseIndex.from_embeddings(emb, [f"d{i}" for i in range(600)], dtype=dtype, check_sample=0)
    ids, scores = idx.search_ids(q, 10, exact=True)
    peer = idx.usearch_index.search(_prepare(q, idx.metric, idx.meta.usearch_metric), 10, exact=True)
    if dtype == "f32":
        np.testing.assert_array_equal(ids, peer.keys.astype(np.int64))
        np.testing.assert_allclose(scores, 1.0 - peer.distances, atol=1e-5)
    else:  # usearch's quantised kernels round differently: near-ties may swap, scores agree to the storage's step
        assert ann_recall(ids, peer.keys.astype(np.int64), 10) >= 0.95
        np.testing.assert_allclose(scores, 1.0 - peer.distances, atol={"f16": 1e-3, "bf16": 5e-3, "i8": 2e-2}[dtype])
    # each score is the exact similarity of the unit query to the stored vector: the inner product with the
    # stored (rounded) unit rows for float storage, the cosine with usearch's scaled int8 values for i8
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    sv = idx.stored_vectors().astype(np.float32)
    if dtype == "i8":
        sv /= np.linalg.norm(sv, axis=1, keepdims=True)
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", qn, sv[ids]), atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()
    # the stored vectors come back in docid order: for f32, the unit rows that were indexed
    stored = idx.stored_vectors()
    assert stored.shape == emb.shape and stored.dtype == {"f32": np.float32, "f16": np.float16,
                                                          "bf16": np.float32, "i8": np.int8}[dtype]
    if dtype == "f32":
        np.testing.assert_allclose(stored, emb / np.linalg.norm(emb, axis=1, keepdims=True), atol=1e-6)
    view = DenseIndex.load(idx.save(tmp_path / dtype), mmap=True)
    v_ids, v_scores = view.search_ids(q, 10, exact=True)
    np.testing.assert_array_equal(v_ids, ids)
    np.testing.assert_array_equal(v_scores, scores)


def test_rows_hnsw_answers_short_are_searched_exactly(monkeypatch, caplog):
    rng = np.random.default_rng(2)
    emb = rng.standard_normal((300, 8)).astype(np.float32)
    q = rng.standard_normal((6, 8)).astype(np.float32)
    idx = DenseIndex.from_embeddings(emb, [str(i) for i in range(300)], check_sample=0)
    want = idx.search_ids(q, 5, exact=True)
    real = DenseIndex._search

    def short(self, qq, k):  # rows 1 and 4 come back with 2 of 5 hits, as from a poorly connected graph
        keys, dist, counts = real(self, qq, k)
        counts = counts.copy()
        counts[[1, 4]] = 2
        keys, dist = keys.copy(), dist.copy()
        keys[[1, 4], 2:], dist[[1, 4], 2:] = 0, np.nan
        return keys, dist, counts

    monkeypatch.setattr(DenseIndex, "_search", short)
    with caplog.at_level(logging.WARNING, logger="intdistill.index"):
        ids, scores = idx.search_ids(q, 5)
    assert "fewer than k=5 hits for 2 of 6 queries: searched those exactly" in caplog.text
    np.testing.assert_array_equal(ids[[1, 4]], want[0][[1, 4]])
    np.testing.assert_allclose(scores, want[1], atol=1e-6)


def test_small_builds_are_single_threaded_reachable_and_reproducible():
    """Up to SINGLE_THREAD_BUILD_MAX passages the graph is built on one thread: every passage searched with its
    own vector finds itself (multi-threaded usearch builds can leave nodes unreachable), and two builds of the
    same vectors answer identically even at a tiny ef."""
    emb = _hard(3000, 32, seed=11)
    ids = [str(i) for i in range(len(emb))]
    a = DenseIndex.from_embeddings(emb, ids, check_sample=0)
    np.testing.assert_array_equal(a.search_ids(emb, 1)[0][:, 0], np.arange(len(emb)))
    b1 = DenseIndex.from_embeddings(emb, ids, expansion_search=8, check_sample=0)
    b2 = DenseIndex.from_embeddings(emb, ids, expansion_search=8, check_sample=0)
    q = _hard(200, 32, seed=12)
    np.testing.assert_array_equal(b1.search_ids(q, 10)[0], b2.search_ids(q, 10)[0])
