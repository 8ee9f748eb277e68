"""`intdistill evaluate`: loaders replaced by records (the command calls intdistill.data's loaders)."""

from __future__ import annotations

import csv
import json
import math
import sys
import types
from pathlib import Path

import pytest

from intdistill import cli, data
from intdistill.data import DataError, Passage, Qrels, Query, Run

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

QRELS = Qrels({"q1": {"a": 1, "b": 0}, "q2": {"c": 2}, "q3": {"x": 1}})
RUN = Run({"q1": {"b": 2.0, "a": 1.0}, "q2": {"c": 5.0}, "q9": {"a": 1.0}})


@pytest.fixture
def loaders(monkeypatch):
    """Replaces intdistill.data's loaders (they may not exist on this branch yet) and logs calls."""
    calls = []

    def fake(name, value):
        def load(path):
            calls.append((name, str(path)))
            return value

        monkeypatch.setattr(data, name, load, raising=False)

    fake("load_qrels", QRELS)
    fake("load_run", RUN)
    fake("load_queries", {"q1": Query("q1", "?", ("x",)), "q2": Query("q2", "?", ("y",))})
    fake("load_corpus", {"a": Passage("a", "x"), "c": Passage("c", "z")})
    return calls


def test_default_measures_table(loaders, capsys):
    assert cli.main(["evaluate", "--qrels", "q.tsv", "--run", "r.trec"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["query", "nDCG@10", "R@100", "RR@10", "P@10", "AP@100"]
    # q1: relevant "a" at rank 2; q2: relevant at rank 1; q3: absent from the run -> 0
    ndcg = (1 / math.log2(3) + 1.0 + 0.0) / 3
    assert lines[1].split() == ["all", f"{ndcg:.4f}", f"{2 / 3:.4f}", f"{0.5:.4f}", f"{0.2 / 3:.4f}", f"{0.5:.4f}"]
    assert len(lines) == 2
    assert "evaluated 3 queries; 1 judged but absent from the run (scored 0), 1 run queries" in err
    assert loaders == [("load_qrels", "q.tsv"), ("load_run", "r.trec")]
    # aligned: every column ends at the same offset
    assert len({len(line) for line in lines}) == 1


def test_per_query_json(loaders, capsys):
    assert cli.main(["evaluate", "--qrels", "q", "--run", "r", "-m", "RR@1", "ndcg@2", "--per-query", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["measures"] == ["RR@1", "nDCG@2"]
    assert out["per_query"]["q1"] == {"RR@1": 0.0, "nDCG@2": pytest.approx(1 / math.log2(3))}
    assert out["per_query"]["q3"] == {"RR@1": 0.0, "nDCG@2": 0.0}
    assert out["mean"]["RR@1"] == pytest.approx(1 / 3)
    assert (out["n_queries"], out["n_missing"], out["n_ignored"]) == (3, 1, 1)


def test_per_query_table_and_mean_json(loaders, capsys):
    assert cli.main(["evaluate", "--qrels", "q", "--run", "r", "-m", "P@1", "--per-query"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows == [["query", "P@1"], ["q1", "0.0000"], ["q2", "1.0000"], ["q3", "0.0000"], ["all", "0.3333"]]
    assert cli.main(["evaluate", "--qrels", "q", "--run", "r", "-m", "P@1", "--format", "json"]) == 0
    assert "per_query" not in json.loads(capsys.readouterr().out)


def test_answer_mode(loaders, capsys, monkeypatch):
    def accuracy_at_k(run, queries, corpus, ks):
        assert (run, sorted(queries), sorted(corpus), ks) == (RUN, ["q1", "q2"], ["a", "c"], [1, 5, 20])
        return {"q1": {1: 1.0, 5: 1.0, 20: 1.0}, "q2": {1: 0.0, 5: 0.0, 20: 1.0}}

    monkeypatch.setitem(sys.modules, "intdistill.answers", types.SimpleNamespace(accuracy_at_k=accuracy_at_k))
    # no -m: answer mode defaults to Acc@1 Acc@5 Acc@20; no qrels needed
    assert cli.main(["evaluate", "--queries", "qs.jsonl", "--corpus", "c.jsonl", "--run", "r", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mean"] == {"Acc@1": 0.5, "Acc@5": 0.5, "Acc@20": 1.0}
    assert [c[0] for c in loaders] == ["load_queries", "load_corpus", "load_run"]


def test_usage_errors_reported_together(loaders, capsys):
    code = cli.main(["evaluate", "--run", "r", "-m", "MAP@10", "nDCG@0", "R@10", "Acc@5"])
    assert code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "unknown measure 'MAP@10'; known measures: nDCG@k, R@k, P@k, RR@k, AP@k, Success@k, Acc@k" in err
    assert "measure 'nDCG@0': cutoff must be an integer k >= 1, got '0'" in err
    assert "measures R@10 need --qrels" in err
    assert "measures Acc@5 need --queries and --corpus; missing --queries --corpus" in err
    assert loaders == []  # nothing loaded before the usage is valid


def test_bad_data_exit_code(loaders, capsys, monkeypatch):
    def bad(path):
        raise DataError(path, 7, "expected 'qid Q0 docid rank score tag', got 3 fields")

    monkeypatch.setattr(data, "load_run", bad, raising=False)
    assert cli.main(["evaluate", "--qrels", "q", "--run", "r.trec"]) == cli.EXIT_BAD_INPUT
    assert "r.trec:7: expected 'qid Q0 docid rank score tag', got 3 fields" in capsys.readouterr().err


def test_empty_qrels_is_bad_input(loaders, capsys, monkeypatch):
    monkeypatch.setattr(data, "load_qrels", lambda path: Qrels(), raising=False)
    assert cli.main(["evaluate", "--qrels", "q", "--run", "r"]) == cli.EXIT_BAD_INPUT
    assert "no query with a judgement" in capsys.readouterr().err


def test_real_scifact_files(tmp_path, capsys):
    """SciFact test qrels (real file, CRLF, header) and a run built from them with a known score:
    each query ranks one unjudged doc first, then its relevant docs."""
    qrels_path = DATA / "scifact" / "qrels" / "test.tsv"
    relevant: dict[str, list[str]] = {}
    with open(qrels_path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    for qid, doc, score in rows[1:]:
        if int(score) >= 1:
            relevant.setdefault(qid, []).append(doc)
    run_path = tmp_path / "run.trec"
    with open(run_path, "w") as f:
        for qid, docs in relevant.items():
            ranked = ["not-a-judged-doc"] + docs
            for rank, doc in enumerate(ranked, 1):
                f.write(f"{qid} Q0 {doc} {rank} {100 - rank} test\n")
    code = cli.main(["evaluate", "--qrels", str(qrels_path), "--run", str(run_path), "-m", "RR@10", "R@100", "P@1", "--format", "json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_queries"] == 300 and out["n_missing"] == 0 and out["n_ignored"] == 0
    assert out["mean"] == {"RR@10": 0.5, "R@100": 1.0, "P@1": 0.0}


def test_real_scifact_lexical_run_equals_pytrec_eval(tmp_path, capsys):
    """A real ranked run over SciFact test (word-overlap scores: many ties, 100 docs per query), written as
    TREC, evaluated by the CLI: every measure equals pytrec_eval's on the same files."""
    import re

    import pytrec_eval

    from intdistill.data import Run, load_beir, save_run

    ds = load_beir(DATA / "scifact", "test")
    words = lambda s: set(re.findall(r"[a-z0-9]+", s.lower()))  # noqa: E731
    doc_words = {d: words(p.full_text()) for d, p in ds.corpus.items()}
    run = Run(tag="overlap")
    for qid, q in ds.queries.items():
        qw = words(q.text)
        scores = sorted(((len(qw & w), d) for d, w in doc_words.items()), reverse=True)[:100]
        run[qid] = {d: float(s) for s, d in scores}
    run_path = tmp_path / "overlap.trec"
    save_run(run, run_path)
    qrels_path = DATA / "scifact" / "qrels" / "test.tsv"
    code = cli.main(["evaluate", "--qrels", str(qrels_path), "--run", str(run_path), "--format", "json",
                     "--per-query", "-m", "nDCG@10", "R@100", "P@10", "RR@10", "AP@100"])
    assert code == 0
    ours = json.loads(capsys.readouterr().out)
    trec_run = {}
    for line in run_path.read_text().splitlines():
        qid, _, doc, _, score, _ = line.split()
        trec_run.setdefault(qid, {})[doc] = float(score)
    qrels = {q: dict(d) for q, d in data.load_qrels(qrels_path).items()}
    peer = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100", "P.10", "map_cut.100"}).evaluate(trec_run)
    cut10 = {q: dict(sorted(d.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:10]) for q, d in trec_run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut10)
    names = {"nDCG@10": "ndcg_cut_10", "R@100": "recall_100", "P@10": "P_10", "AP@100": "map_cut_100"}
    assert ours["n_queries"] == 300
    for q in qrels:
        for ours_name, peer_name in names.items():
            assert ours["per_query"][q][ours_name] == pytest.approx(peer.get(q, {}).get(peer_name, 0.0), abs=1e-9)
        assert ours["per_query"][q]["RR@10"] == pytest.approx(rr.get(q, {}).get("recip_rank", 0.0), abs=1e-9)
    assert 0.3 < ours["mean"]["nDCG@10"] < 0.8


def test_compare_runs_hand_computed(tmp_path, capsys):
    """Two named runs: the second row carries the change and the exact sign-flip p-value (3 queries)."""
    qrels = tmp_path / "q.tsv"
    qrels.write_text("q1 0 a 1\nq2 0 c 1\nq3 0 x 1\n")
    base, better = tmp_path / "base.trec", tmp_path / "better.trec"
    base.write_text("q1 Q0 b 1 2 t\nq1 Q0 a 2 1 t\nq2 Q0 c 1 5 t\nq3 Q0 y 1 1 t\n")
    better.write_text("q1 Q0 a 1 2 t\nq1 Q0 b 2 1 t\nq2 Q0 c 1 5 t\nq3 Q0 x 1 1 t\n")
    argv = ["evaluate", "--qrels", str(qrels), "--run", f"base={base}", "--run", f"new={better}", "-m", "RR@10"]
    assert cli.main(argv + ["--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["means"] == {"base": {"RR@10": pytest.approx(0.5)}, "new": {"RR@10": 1.0}}
    t = out["tests"]["new"]["RR@10"]
    # d = (0.5, 0, 1): of the 8 sign patterns, |mean| >= 0.5 for (+,*,+) and (-,*,-): 4 of 8
    assert (t["delta"], t["p_value"], t["n"], t["exact"]) == (pytest.approx(0.5), pytest.approx(0.5), 3, True)
    assert cli.main(argv + ["--format", "markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["| run | RR@10 |", "| --- | --- |", "| base | 0.5000 |", "| new | 1.0000 (+0.5000, p=0.5) |"]
    assert cli.main(argv) == 0  # an aligned table
    out = capsys.readouterr().out.splitlines()
    assert out[2].split() == ["new", "1.0000", "(+0.5000,", "p=0.5)"]
    # a run named twice, a run over other queries
    assert cli.main(["evaluate", "--qrels", str(qrels), "--run", f"a={base}", "--run", f"a={better}"]) == 2
    assert "expected distinct run names, got 'a' twice" in capsys.readouterr().err
    from intdistill.metrics import compare, evaluate

    with pytest.raises(ValueError, match="run 'b': expected the same 2 scored queries as the baseline 'a', got 1"):
        compare({"a": evaluate({"q1": {"a": 1}, "q2": {"c": 1}}, {"q1": {"a": 1.0}}, ["RR@10"]),
                 "b": evaluate({"q1": {"a": 1}}, {"q1": {"a": 1.0}}, ["RR@10"])})
    with pytest.raises(ValueError, match="baseline: expected one of"):
        compare({"a": evaluate({"q1": {"a": 1}}, {"q1": {"a": 1.0}}, ["RR@10"])}, baseline="z")
