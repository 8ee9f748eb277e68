"""Metrics: the Rust core (both entry points) vs the pure-Python reference, pytrec_eval, hand values."""

from __future__ import annotations

import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import intdistill
import reference_metrics as ref
from intdistill import _core
from intdistill.data import Qrels, Query, Run
from intdistill.metrics import (
    REGISTRY,
    Evaluation,
    ann_recall,
    evaluate,
    evaluate_prepared,
    kendall_tau,
    paired_test,
    parse_measure,
    prepare,
    prepare_topk,
)
from intdistill.significance import _student_t_two_sided as student_t_fallback

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KINDS = {"nDCG": "ndcg", "R": "recall", "P": "precision", "RR": "rr", "AP": "ap", "Success": "success"}

# --- strategies: small doc alphabets so runs and qrels overlap; scores with exact and float32 ties
DOCS = [f"d{i}" for i in range(8)] + ["D", "d10", "é", "a b"]
SCORES = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 1.0 + 1e-9, 2.5, -1.0, 1e30]),
    st.floats(-10, 10, allow_nan=False, allow_infinity=False),
    st.integers(-3, 3),
)
judgements = st.dictionaries(st.sampled_from(DOCS), st.integers(-1, 3), max_size=6)
results = st.dictionaries(st.sampled_from(DOCS), SCORES, max_size=10)
QIDS = st.sampled_from([f"q{i}" for i in range(6)])
qrels_st = st.dictionaries(QIDS, judgements, max_size=5)
run_st = st.dictionaries(QIDS, results, max_size=5)
measures_st = st.lists(
    st.tuples(st.sampled_from(sorted(KINDS)), st.integers(1, 12)).map(lambda t: f"{t[0]}@{t[1]}"),
    min_size=1,
    max_size=5,
)


def _spec(name: str) -> tuple[str, int]:
    m = parse_measure(name)
    return m.spec.kind, m.k


def _expected(qrels, run, names):
    want = ref.evaluate(qrels, run, [_spec(n) for n in names])
    return {q: dict(zip([parse_measure(n).name for n in names], v)) for q, v in want.items()}


def _close(got: dict, want: dict, tol=1e-12):
    assert got.keys() == want.keys()
    for q in want:
        assert got[q].keys() == want[q].keys(), q
        for m in want[q]:
            assert abs(got[q][m] - want[q][m]) <= tol, (q, m, got[q][m], want[q][m])


# --- reference equivalence -------------------------------------------------------------------


@SETTINGS
@given(qrels=qrels_st, run=run_st, names=measures_st)
def test_dict_path_matches_reference(qrels, run, names):
    if not any(qrels.values()):
        with pytest.raises(ValueError, match="no query with a judgement"):
            evaluate(qrels, run, names)
        return
    e = evaluate(qrels, run, names)
    _close(e.per_query, _expected(qrels, run, names))
    judged = [q for q, j in qrels.items() if j]
    assert list(e.per_query) == judged
    assert e.n_queries == len(judged)
    assert e.n_missing == sum(q not in run for q in judged)
    assert e.n_ignored == sum(q not in judged for q in run)
    for m in e.mean:
        assert e.mean[m] == pytest.approx(sum(r[m] for r in e.per_query.values()) / len(judged), abs=1e-12)


@SETTINGS
@given(qrels=qrels_st, run=run_st, names=measures_st)
def test_prepared_path_matches_dict_path(qrels, run, names):
    if not any(qrels.values()):
        return
    p = prepare(qrels, run)
    e = evaluate_prepared(p, names)
    d = evaluate(qrels, run, names)
    assert e.per_query == d.per_query  # bit-identical
    assert (e.n_queries, e.n_missing, e.n_ignored) == (d.n_queries, d.n_missing, d.n_ignored)


@SETTINGS
@given(
    data=st.data(),
    nq=st.integers(1, 5),
    k=st.integers(1, 6),
    n_docs=st.integers(1, 12),
)
def test_prepare_topk_matches_dict_path(data, nq, k, n_docs):
    doc_ids = [f"doc{i:02d}" if i % 3 else f"z{i}" for i in range(n_docs)]
    idx = np.array(data.draw(st.lists(st.lists(st.integers(-1, n_docs - 1), min_size=k, max_size=k), min_size=nq, max_size=nq)))
    scores = np.array(data.draw(st.lists(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.0 + 1e-9, 2.0]), min_size=k, max_size=k), min_size=nq, max_size=nq)))
    # distinct docs per row (an index never returns a doc twice): blank repeats as padding
    for row in idx:
        seen = set()
        for j, x in enumerate(row):
            if x in seen:
                row[j] = -1
            seen.add(int(x))
    qids = [f"q{i}" for i in range(nq)]
    qrels = data.draw(st.dictionaries(st.sampled_from(qids + ["q_unrun"]), st.dictionaries(st.sampled_from(doc_ids + ["gone"]), st.integers(0, 3), min_size=1, max_size=4), min_size=1, max_size=4))
    run = {q: {doc_ids[x]: float(s) for x, s in zip(idx[i], scores[i]) if x >= 0} for i, q in enumerate(qids)}
    names = ["nDCG@3", "R@2", "P@2", "RR@4", "AP@5", "Success@1"]
    p = prepare_topk(qrels, qids, doc_ids, idx, scores)
    assert evaluate_prepared(p, names).per_query == evaluate(qrels, run, names).per_query
    # unsigned keys with all-ones padding (usearch style) read the same
    p2 = prepare_topk(qrels, qids, doc_ids, idx.astype(np.uint64), scores)
    assert evaluate_prepared(p2, names).per_query == evaluate(qrels, run, names).per_query


# --- pytrec_eval ------------------------------------------------------------------------------


def _random_case(rng, nq=40, n_docs=60):
    qrels, run = {}, {}
    docs = [f"doc{i}" for i in range(n_docs)]
    for q in range(nq):
        qid = f"q{q}"
        judged = rng.choice(n_docs, rng.integers(1, 15), replace=False)
        qrels[qid] = {docs[j]: int(rng.integers(-1, 4)) for j in judged}
        n = int(rng.integers(0, n_docs))
        ret = rng.choice(n_docs, n, replace=False)
        # coarse scores make many exact ties; a few differ only below float32 resolution
        sc = rng.integers(0, 8, n).astype(float) + np.where(rng.random(n) < 0.2, 1e-9, 0.0)
        run[qid] = {docs[j]: float(s) for j, s in zip(ret, sc)}
    return qrels, run


def test_equals_pytrec_eval_with_ties():
    rng = np.random.default_rng(7)
    ks = [1, 3, 5, 10, 20]
    for _ in range(5):
        qrels, run = _random_case(rng)
        names = [f"{m}@{k}" for m in ("nDCG", "R", "P", "AP", "Success", "RR") for k in ks]
        ours = evaluate(qrels, run, names).per_query
        trec = pytrec_eval.RelevanceEvaluator(
            qrels, {f"ndcg_cut.{','.join(map(str, ks))}", f"recall.{','.join(map(str, ks))}",
                    f"P.{','.join(map(str, ks))}", f"map_cut.{','.join(map(str, ks))}",
                    f"success.{','.join(map(str, ks))}"}
        ).evaluate(run)
        names_trec = {"nDCG": "ndcg_cut", "R": "recall", "P": "P", "AP": "map_cut", "Success": "success"}
        compared = 0
        for qid, vals in trec.items():
            for m, t in names_trec.items():
                for k in ks:
                    assert ours[qid][f"{m}@{k}"] == pytest.approx(vals[f"{t}_{k}"], abs=1e-6), (qid, m, k)
                    compared += 1
        assert compared > 500
        # RR@k: trec_eval's recip_rank has no cutoff, so compare on runs cut to k docs (trec_eval order)
        for k in ks:
            cut = {q: {d: r[d] for d in ref.ranking(r)[:k]} for q, r in run.items()}
            trec_rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
            for qid, vals in trec_rr.items():
                assert ours[qid][f"RR@{k}"] == pytest.approx(vals["recip_rank"], abs=1e-6), (qid, k)


def test_pytrec_eval_query_policy():
    """pytrec_eval scores judged queries with no relevant doc as 0 (we do too) and skips judged
    queries absent from the run (we score them 0 and count them, like trec_eval -c)."""
    qrels = {"none_rel": {"a": 0, "b": -1}, "ok": {"a": 1}, "unrun": {"a": 2}, "empty": {}}
    run = {"none_rel": {"a": 3.0, "b": 1.0}, "ok": {"b": 2.0, "a": 1.0}, "run_only": {"a": 1.0}, "empty": {"a": 1.0}}
    trec = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10"}).evaluate(run)
    assert set(trec) == {"none_rel", "ok"}
    assert trec["none_rel"] == {"ndcg_cut_10": 0.0, "recall_10": 0.0}
    e = evaluate(qrels, run, ["nDCG@10", "R@10"])
    assert list(e.per_query) == ["none_rel", "ok", "unrun"]
    assert e.per_query["none_rel"] == {"nDCG@10": 0.0, "R@10": 0.0}
    assert e.per_query["ok"]["nDCG@10"] == pytest.approx(trec["ok"]["ndcg_cut_10"], abs=1e-12)
    assert e.per_query["unrun"] == {"nDCG@10": 0.0, "R@10": 0.0}
    assert (e.n_queries, e.n_missing, e.n_ignored) == (3, 1, 2)  # run_only and empty are ignored
    assert e.mean["R@10"] == pytest.approx(1.0 / 3)


# --- hand-computed values ---------------------------------------------------------------------


def test_hand_computed_each_metric():
    # ranking: d5 (rel 0), d4 (rel 2), d3 (unjudged), d2 (rel 1), d1 (rel 0); d9 (rel 3) not retrieved
    qrels = Qrels({"q": {"d5": 0, "d4": 2, "d2": 1, "d1": 0, "d9": 3}})
    run = Run({"q": {"d5": 0.9, "d4": 0.8, "d3": 0.7, "d2": 0.6, "d1": 0.5}})
    names = ["nDCG@5", "R@5", "P@5", "RR@5", "AP@5", "Success@1", "Success@2", "RR@1", "R@3", "P@2", "nDCG@1", "AP@2"]
    got = evaluate(qrels, run, names).mean
    dcg5 = 2 / math.log2(3) + 1 / math.log2(5)
    idcg5 = 3 + 2 / math.log2(3) + 1 / 2
    want = {
        "nDCG@5": dcg5 / idcg5,
        "R@5": 2 / 3,
        "P@5": 2 / 5,
        "RR@5": 1 / 2,
        "AP@5": (1 / 2 + 2 / 4) / 3,
        "Success@1": 0.0,
        "Success@2": 1.0,
        "RR@1": 0.0,
        "R@3": 1 / 3,
        "P@2": 1 / 2,
        "nDCG@1": 0.0,
        "AP@2": (1 / 2) / 3,
    }
    assert got == pytest.approx(want, abs=1e-15)
    assert want["nDCG@5"] == pytest.approx(0.35544, abs=1e-5)  # 1.69254 / 4.76186


def test_ties_break_by_docid_descending_and_float32():
    qrels = {"q": {"a": 1}}
    # equal scores: "b" > "a", so "b" ranks first and "a" second
    assert evaluate(qrels, {"q": {"a": 1.0, "b": 1.0}}, ["RR@5"]).mean["RR@5"] == 0.5
    # 1 + 1e-9 rounds to the same float32 as 1.0: still a tie (trec_eval stores float scores)
    assert evaluate(qrels, {"q": {"a": 1.0 + 1e-9, "b": 1.0}}, ["RR@5"]).mean["RR@5"] == 0.5
    assert evaluate(qrels, {"q": {"a": 1.0 + 1e-6, "b": 1.0}}, ["RR@5"]).mean["RR@5"] == 1.0
    # -0.0 == 0.0
    assert evaluate(qrels, {"q": {"a": -0.0, "b": 0.0}}, ["RR@5"]).mean["RR@5"] == 0.5


def test_numpy_and_int_scores_and_rels():
    qrels = {"q": {"a": np.int64(2), "b": 1}}
    run = {"q": {"a": np.float32(0.5), "b": 1, "c": np.float64(0.7)}}
    e = evaluate(qrels, run, ["RR@3", "R@1"])
    assert e.mean == {"RR@3": 1.0, "R@1": 0.5}


# --- measure names ----------------------------------------------------------------------------


def test_measure_names_parse_canonically():
    assert parse_measure("ndcg@10").name == "nDCG@10"
    assert parse_measure("r@100").name == "R@100"
    assert parse_measure("Acc@20").spec.kind == "answers"
    assert parse_measure("success@1").k == 1
    e = evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, ["rr@10", "RR@10", "p@5"])
    assert list(e.mean) == ["RR@10", "P@5"]


@pytest.mark.parametrize(
    "name, fragment",
    [("MAP@10", "unknown measure 'MAP@10'"), ("nDCG", "needs a cutoff"), ("nDCG@0", "got '0'"),
     ("R@-1", "got '-1'"), ("P@x", "got 'x'"), ("P@1.5", "got '1.5'")],
)
def test_bad_measure_names(name, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")) as info:
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, [name])
    if "unknown" in fragment:
        for spec in REGISTRY.values():  # the list of known names comes from the registry
            assert f"{spec.name}@k" in str(info.value)


def test_registry_kinds_are_the_cores():
    assert {s.kind for s in REGISTRY.values()} - {"answers"} == set(_core.METRIC_KINDS)


# --- invalid inputs ---------------------------------------------------------------------------


def test_invalid_values_are_named():
    with pytest.raises(ValueError, match=r"qrels\['q'\]\['a'\]: relevance must be an integer, got 0.5"):
        evaluate({"q": {"a": 0.5}}, {"q": {"a": 1.0}}, ["P@1"])
    with pytest.raises(ValueError, match=r"run\['q'\]\['b'\]: score must be a number, got nan"):
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0, "b": float("nan")}}, ["P@1"])
    with pytest.raises(ValueError, match=r"run\['q'\]\['b'\]: score must be a number, got 'x'"):
        evaluate({"q": {"a": 1}}, {"q": {"a": 1.0, "b": "x"}}, ["P@1"])
    with pytest.raises(ValueError, match=r"run\['q'\] must be a dict, got list"):
        evaluate({"q": {"a": 1}}, {"q": ["a"]}, ["P@1"])
    with pytest.raises(ValueError, match="need qrels, got qrels=None"):
        evaluate(None, {"q": {"a": 1.0}}, ["P@1"])
    with pytest.raises(ValueError, match=r"run\['q'\]\['b'\]: score must be a number, got 'x'"):
        prepare({"q": {"a": 1}}, {"q": {"a": 1.0, "b": "x"}})
    with pytest.raises(ValueError, match=r"qrels\['q'\]\['a'\]: relevance must be an integer, got '1'"):
        prepare({"q": {"a": "1"}}, {"q": {"a": 1.0}})


def test_csr_arrays_validated():
    i64 = lambda *x: np.array(x, dtype=np.int64)  # noqa: E731
    good = dict(qrels_offsets=i64(0, 1), qrels_docs=i64(0), qrels_rels=i64(1), run_offsets=i64(0, 2),
                run_docs=i64(0, 1), run_scores=np.array([1.0, 2.0]))
    args = lambda **kw: [{**good, **kw}[k] for k in good] + [[("rr", 3)]]  # noqa: E731
    assert _core.evaluate_csr(*args()).tolist() == [[0.5]]
    with pytest.raises(ValueError, match="run_docs and run_scores must have the same length, got 2 and 3"):
        _core.evaluate_csr(*args(run_scores=np.array([1.0, 2.0, 3.0])))
    with pytest.raises(ValueError, match="qrels_docs and qrels_rels must have the same length, got 1 and 2"):
        _core.evaluate_csr(*args(qrels_rels=i64(1, 2)))
    with pytest.raises(ValueError, match=r"offsets\[-1\] must equal the number of entries 2, got 3"):
        _core.evaluate_csr(*args(run_offsets=i64(0, 3)))
    with pytest.raises(ValueError, match="same length .n_queries . 1., got 2 and 3"):
        _core.evaluate_csr(*args(run_offsets=i64(0, 1, 2)))
    with pytest.raises(ValueError, match=r"run_docs\[1\]: doc codes must be in \[0, 2\^32\), got -5"):
        _core.evaluate_csr(*args(run_docs=i64(0, -5)))
    with pytest.raises(ValueError, match="k must be >= 1, got k=0"):
        _core.evaluate_csr(*args()[:-1], [("rr", 0)])
    with pytest.raises(ValueError, match="unknown measure kind \"map\""):
        _core.evaluate_csr(*args()[:-1], [("map", 3)])


def test_prepare_topk_full_rows_hand():
    # no padding, every judged query searched: the fast branch; ties break by doc id ("b" > "a")
    doc_ids = ["a", "b", "c"]
    idx = np.array([[0, 1], [2, 0], [1, 2]])
    scores = np.array([[1.0, 1.0], [3.0, 2.0], [0.5, 0.25]])
    p = prepare_topk({"q0": {"a": 1}, "q1": {"a": 2, "zz": 1}}, ["q0", "q1", "q2"], doc_ids, idx, scores)
    e = evaluate_prepared(p, ["RR@2", "R@2"])
    assert e.per_query == {"q0": {"RR@2": 0.5, "R@2": 1.0}, "q1": {"RR@2": 0.5, "R@2": 0.5}}
    assert (e.n_queries, e.n_missing, e.n_ignored) == (2, 0, 1)
    assert p.run_offsets.tolist() == [0, 2, 4]


def test_prepare_topk_validation():
    q = {"q0": {"a": 1}}
    with pytest.raises(ValueError, match=r"shape \(n_queries, k\), got \(2, 3\) and \(2, 2\)"):
        prepare_topk(q, ["q0", "q1"], ["a", "b"], np.zeros((2, 3), int), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="query_ids has 1 ids but indices has 2 rows"):
        prepare_topk(q, ["q0"], ["a", "b"], np.zeros((2, 3), int), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"indices must be < len\(doc_ids\) = 2, got 5"):
        prepare_topk(q, ["q0"], ["a", "b"], np.array([[5]]), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="doc_ids must be distinct, got 1 repeated"):
        prepare_topk(q, ["q0"], ["a", "a"], np.array([[0]]), np.zeros((1, 1)))


# --- Acc@k dispatch ---------------------------------------------------------------------------


def test_acc_dispatches_to_answers_module(monkeypatch):
    calls = []

    def accuracy_at_k(run, queries, corpus, ks):
        calls.append((run, queries, corpus, ks))
        return {"q1": {1: 0.0, 5: 1.0}, "q2": {1: 1.0, 5: 1.0}}

    monkeypatch.setitem(sys.modules, "intdistill.answers", types.SimpleNamespace(accuracy_at_k=accuracy_at_k))
    run = Run({"q1": {"p": 1.0}})
    queries = {"q1": Query("q1", "who?", ("x",)), "q2": Query("q2", "what?", ("y",))}
    corpus = {"p": intdistill.Passage("p", "x y")}
    e = evaluate(None, run, ["Acc@5", "Acc@1"], queries=queries, corpus=corpus)
    assert calls == [(run, queries, corpus, [1, 5])]
    assert e.mean == {"Acc@5": 1.0, "Acc@1": 0.5}
    assert e.per_query == {"q1": {"Acc@5": 1.0, "Acc@1": 0.0}, "q2": {"Acc@5": 1.0, "Acc@1": 1.0}}
    assert e.n_queries == 2
    # mixed with qrels measures: one record, both kinds per query
    e = evaluate({"q1": {"p": 1}}, run, ["RR@10", "Acc@1"], queries=queries, corpus=corpus)
    assert e.per_query["q1"] == {"RR@10": 1.0, "Acc@1": 0.0}
    assert e.mean == {"RR@10": 1.0, "Acc@1": 0.5}


def test_acc_without_queries_or_corpus():
    with pytest.raises(ValueError, match="Acc@1 need queries= .* missing: queries, corpus"):
        evaluate(None, {"q": {"p": 1.0}}, ["Acc@1"])
    with pytest.raises(ValueError, match="missing: corpus"):
        evaluate(None, {"q": {"p": 1.0}}, ["Acc@1"], queries={})


# --- ANN recall and Kendall's tau ---------------------------------------------------------------


@SETTINGS
@given(data=st.data(), nq=st.integers(1, 6), wa=st.integers(1, 8), we=st.integers(1, 8))
def test_ann_recall_matches_reference(data, nq, wa, we):
    k = data.draw(st.integers(1, min(wa, we)))
    ids = st.integers(-1, 10)
    approx = np.array(data.draw(st.lists(st.lists(ids, min_size=wa, max_size=wa), min_size=nq, max_size=nq)))
    exact = np.array(data.draw(st.lists(st.lists(ids, min_size=we, max_size=we), min_size=nq, max_size=nq)))
    got = ann_recall(approx, exact, k, per_query=True)
    assert got.tolist() == pytest.approx(ref.ann_recall(approx, exact, k), abs=1e-15)
    assert ann_recall(approx, exact, k) == pytest.approx(np.mean(ref.ann_recall(approx, exact, k)), abs=1e-15)


def test_ann_recall_hand_and_errors():
    approx = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=np.uint64)
    exact = np.array([[3, 9, 1, 0], [8, 7, 6, 5]])
    # k=3: {1,2,3} vs {3,9,1} -> 2/3; {5,6,7} vs {8,7,6} -> 2/3; k=4: {1,3} of 4 -> 1/2, and 1
    assert ann_recall(approx, exact, 3) == pytest.approx(2 / 3)
    assert ann_recall(approx, exact, 4, per_query=True).tolist() == [0.5, 1.0]
    padded = np.array([[1, np.iinfo(np.uint64).max]], dtype=np.uint64)
    assert ann_recall(padded, np.array([[1, -1]]), 2) == 0.5  # padding never matches
    with pytest.raises(ValueError, match="k must be an integer >= 1, got k=0"):
        ann_recall(approx, exact, 0)
    with pytest.raises(ValueError, match="got k=5 with approx 4 columns and exact 4"):
        ann_recall(approx, exact, 5)
    with pytest.raises(ValueError, match="same number of rows, got 2 and 1"):
        ann_recall(approx, exact[:1], 2)
    with pytest.raises(ValueError, match=r"shape \(n_queries, k\), got shape \(4,\)"):
        ann_recall(approx[0], exact, 2)


@SETTINGS
@given(perm=st.permutations(list(range(9))), data=st.data())
def test_kendall_tau_matches_reference(perm, data):
    n = data.draw(st.integers(2, 9))
    items = [x * 7 - 20 for x in perm[:n]]  # arbitrary distinct ids
    other = data.draw(st.permutations(items))
    assert kendall_tau(items, other) == pytest.approx(ref.kendall_tau(items, other), abs=1e-12)


def test_kendall_tau_hand_scipy_and_errors():
    assert kendall_tau([0, 1, 2, 3], [1, 0, 2, 3]) == pytest.approx(4 / 6)  # 1 discordant pair of 6
    assert kendall_tau([0, 1, 2], [2, 1, 0]) == -1.0
    rows = kendall_tau(np.array([[0, 1, 2], [0, 1, 2]]), np.array([[0, 1, 2], [0, 2, 1]]))
    assert rows.tolist() == pytest.approx([1.0, 1 / 3])
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for _ in range(20):
        a, b = rng.permutation(30), rng.permutation(30)
        # scipy correlates two score vectors: rank of each item in a and in b
        ra, rb = np.argsort(a), np.argsort(b)
        assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(ra, rb).statistic, abs=1e-12)
    with pytest.raises(ValueError, match="at least 2 items, got 1"):
        kendall_tau([1], [1])
    with pytest.raises(ValueError, match="item 3 of the first ranking is missing from the second"):
        kendall_tau([1, 3], [1, 2])
    with pytest.raises(ValueError, match=r"same shape, got \(2,\) and \(3,\)"):
        kendall_tau([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="row 1: first ranking lists item 1 twice"):
        kendall_tau(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [1, 2]]))


# --- significance -----------------------------------------------------------------------------


def test_paired_test_hand_computed():
    # differences b - a = 1, 2, 3: of the 8 sign patterns only +++ and --- reach |mean| >= 2 -> p = 2/8
    a = {"q1": 0.0, "q2": 0.0, "q3": 0.0}
    b = {"q1": 1.0, "q2": 2.0, "q3": 3.0}
    r = paired_test(a, b)
    assert r.exact and r.n == 3
    assert (r.mean_a, r.mean_b, r.delta, r.p_value) == (0.0, 2.0, 2.0, 0.25)
    # t = 2 / (1 / sqrt(3)) = 2 sqrt(3), df = 2: p = 1 - t / sqrt(2 + t^2) = 1 - 2 sqrt(3) / sqrt(14)
    assert r.t_p_value == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14), abs=1e-12)
    assert student_t_fallback(2 * math.sqrt(3), 2) == pytest.approx(r.t_p_value, abs=1e-12)
    same = paired_test(a, a)
    assert (same.delta, same.p_value, same.t_p_value) == (0.0, 1.0, 1.0)


def test_paired_test_monte_carlo_and_fallback_t():
    rng = np.random.default_rng(1)
    a = {f"q{i}": float(x) for i, x in enumerate(rng.random(200))}
    b = {q: v + 0.05 + rng.normal(0, 0.2) for q, v in a.items()}
    r1 = paired_test(a, b, n_resamples=2000, seed=5)
    r2 = paired_test(a, b, n_resamples=2000, seed=5)
    assert r1 == r2 and not r1.exact
    assert 1 / 2001 <= r1.p_value <= 1
    assert abs(r1.p_value - r1.t_p_value) < 0.02  # the two tests agree on a large sample
    stats = pytest.importorskip("scipy.stats")
    for t, df in [(0.3, 5), (2.1, 12), (4.0, 199), (-1.5, 3)]:
        assert student_t_fallback(t, df) == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-10)
    d = np.array([b[q] - a[q] for q in a])
    assert r1.t_p_value == pytest.approx(stats.ttest_rel(list(b.values()), list(a.values())).pvalue, rel=1e-10)
    assert r1.delta == pytest.approx(d.mean())


def test_paired_test_errors():
    with pytest.raises(ValueError, match=r"1 only in a \(e.g. \['x'\]\), 0 only in b"):
        paired_test({"x": 1.0, "y": 1.0}, {"y": 1.0})
    with pytest.raises(ValueError, match="n_resamples must be an integer >= 1, got 0"):
        paired_test({"x": 1.0}, {"x": 1.0}, n_resamples=0)
    with pytest.raises(ValueError, match="finite"):
        paired_test({"x": float("nan")}, {"x": 1.0})


# --- package surface --------------------------------------------------------------------------


def test_package_level_evaluate_without_torch():
    assert intdistill.evaluate is evaluate and intdistill.Evaluation is Evaluation
    code = "import sys, intdistill; intdistill.evaluate({'q': {'a': 1}}, {'q': {'a': 1.0}}, ['P@1']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(intdistill.__file__).parents[1])})
    assert out.stdout.strip() == "False"


def test_the_function_does_not_shadow_the_module():
    # intdistill.evaluate is the function; the module's other names are reached through intdistill.metrics
    import intdistill.metrics as m

    assert callable(intdistill.evaluate) and not hasattr(intdistill.evaluate, "compare")
    assert intdistill.metrics is m and m.evaluate is intdistill.evaluate and callable(m.compare)


def test_evaluation_is_frozen():
    e = evaluate({"q": {"a": 1}}, {"q": {"a": 1.0}}, ["P@1"])
    with pytest.raises(AttributeError):
        e.mean = {}
    assert e.measures == ("P@1",)
