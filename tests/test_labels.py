"""Listwise ranking (windows, passes, shuffling), durable labelling, label files, the teacher report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from intdistill.data import DataError, Passage, Query
from intdistill.gate import plot_positions, teacher_report
from intdistill.labels import Label, label_candidates, load_labels
from intdistill.llm.client import ChatResult
from intdistill.llm.listwise import ListwiseConfig, borda, rank_queries

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LINE = re.compile(r"^\[(\d+)\]\s*(.*)$", re.M)


class FakeClient:
    """In-process stand-in for LLMClient: ranks the shown passages by the number after 'rel=' in their text
    (mode 'oracle'), echoes the shown order ('identity'), or answers junk ('junk')."""

    model = "fake-model"

    def __init__(self, mode="oracle", interrupt_after=None):
        self.mode, self.calls, self.interrupt_after = mode, 0, interrupt_after

    def chat(self, messages, **decoding):
        return self.chat_many([messages], **decoding)[0]

    def chat_many(self, batch, **decoding):
        out = []
        for messages in batch:
            if self.interrupt_after is not None and self.calls >= self.interrupt_after:
                raise KeyboardInterrupt
            self.calls += 1
            user = messages[-1]["content"]
            shown = [(int(i), text) for i, text in LINE.findall(user)]
            if self.mode == "oracle":
                rel = {i: int(re.search(r"rel=(\d+)", t).group(1)) for i, t in shown}
                order = sorted(rel, key=lambda i: -rel[i])
                text = " > ".join(f"[{i}]" for i in order)
            elif self.mode == "identity":
                text = " > ".join(f"[{i}]" for i, _ in shown)
            else:
                text = "I cannot rank these [99] [2] [2]"
            out.append(ChatResult(text=text, prompt_tokens=len(user.split()), completion_tokens=len(text.split()),
                                  latency_s=0.0, cached=False, finish_reason="stop"))
        return out


def items_with_rel(rels, qid="q"):
    return [(qid, "query", [f"passage {j} rel={r}" for j, r in enumerate(rels)])]


def test_single_window_oracle_gives_true_order():
    rels = [1, 5, 3, 0, 4]
    (res,) = rank_queries(FakeClient(), items_with_rel(rels), ListwiseConfig(window=10, step=5))
    assert list(res.permutation) == [1, 4, 2, 0, 3]
    assert len(res.calls) == 1 and res.calls[0].start == 0


def test_sliding_window_bubbles_best_to_top():
    rels = list(range(30))  # best candidate last in first-stage order
    (res,) = rank_queries(FakeClient(), items_with_rel(rels), ListwiseConfig(window=10, step=5))
    # back-to-front windows: starts 20, 15, 10, 5, 0 -> five calls
    assert [c.start for c in res.calls] == [20, 15, 10, 5, 0]
    # with a perfect ranker the top (window - step) are exactly the best ones
    assert list(res.permutation[:5]) == [29, 28, 27, 26, 25]
    assert sorted(res.permutation) == list(range(30))


def test_shuffled_passes_map_back_and_agree_for_a_perfect_ranker():
    rels = [3, 9, 1, 7, 5, 0, 2]
    cfg = ListwiseConfig(window=10, step=5, passes=3, shuffle=True, seed=1)
    (res,) = rank_queries(FakeClient(), items_with_rel(rels), cfg)
    truth = tuple(sorted(range(7), key=lambda i: -rels[i]))
    assert res.pass_permutations == (truth, truth, truth)
    assert res.permutation == truth
    shown_orders = {c.shown for c in res.calls}
    assert len(shown_orders) > 1  # the presentation really was shuffled


def test_position_bias_is_visible_with_shuffling():
    cfg = ListwiseConfig(window=10, step=5, passes=2, shuffle=True, seed=0)
    (res,) = rank_queries(FakeClient("identity"), items_with_rel([0] * 8), cfg)
    # an LLM that returns the shown order: each pass's result is its own shuffled order
    assert [c.shown for c in res.calls] == list(res.pass_permutations)
    assert res.pass_permutations[0] != res.pass_permutations[1]


def test_borda_aggregation_and_its_errors():
    assert borda([(0, 1, 2), (1, 0, 2), (1, 2, 0)]) == (1, 0, 2)
    assert borda([(0, 1), (1, 0)]) == (0, 1)  # tie -> first-stage order
    with pytest.raises(ValueError, match="not a permutation"):
        borda([(0, 0, 1)])


def test_config_errors_name_the_value():
    with pytest.raises(ValueError, match="step"):
        ListwiseConfig(window=5, step=6)
    with pytest.raises(ValueError, match="unknown template 'nope'"):
        ListwiseConfig(template="nope")


def _toy(nq=5, n=4):
    corpus = {f"d{q}_{j}": Passage(f"d{q}_{j}", f"passage {j} rel={(j * 7 + q) % n}", f"T{j}") for q in range(nq) for j in range(n)}
    queries = {f"q{q}": Query(f"q{q}", f"query {q}") for q in range(nq)}
    cands = {f"q{q}": [f"d{q}_{j}" for j in range(n)] for q in range(nq)}
    return corpus, queries, cands


def test_label_candidates_resumes_after_interrupt_without_repeating_calls(tmp_path):
    corpus, queries, cands = _toy()
    out = tmp_path / "labels.jsonl"
    client = FakeClient(interrupt_after=3)
    with pytest.raises(KeyboardInterrupt):
        label_candidates(cands, queries, corpus, client, out, ListwiseConfig(window=10, step=5), progress=False)
    first = load_labels(out)
    assert len(first) == 3  # every finished query was written before the interrupt
    client2 = FakeClient()
    summary = label_candidates(cands, queries, corpus, client2, out, ListwiseConfig(window=10, step=5), progress=False)
    assert client2.calls == 2 and summary.queries_done_before == 3 and summary.queries_labelled == 2
    labels = load_labels(out)
    assert list(labels) == list(cands)
    for q, lab in labels.items():
        rel = [int(re.search(r"rel=(\d+)", corpus[d].text).group(1)) for d in lab.cands]
        assert [rel[i] for i in lab.permutation] == sorted(rel, reverse=True)
        assert lab.outputs and lab.model == "fake-model" and lab.template == "rankgpt" and lab.prompt_hash


def test_label_candidates_counts_repairs_and_refuses_mixed_models(tmp_path):
    corpus, queries, cands = _toy(nq=2)
    out = tmp_path / "l.jsonl"
    summary = label_candidates(cands, queries, corpus, FakeClient("junk"), out, progress=False)
    assert summary.calls == 2 and summary.calls_repaired == 2
    assert summary.out_of_range == 2 and summary.duplicates == 2 and summary.missing == 6
    other = FakeClient()
    other.model = "another-model"
    cands["q9"] = cands["q0"]
    queries["q9"] = Query("q9", "x")
    with pytest.raises(DataError, match="another --out"):
        label_candidates(cands, queries, corpus, other, out, progress=False)


def test_label_candidates_rejects_unknown_ids(tmp_path):
    corpus, queries, cands = _toy(nq=1)
    cands["q0"] = ["nope"]
    with pytest.raises(DataError, match="not in the corpus.*'nope'"):
        label_candidates(cands, queries, corpus, FakeClient(), tmp_path / "x.jsonl", progress=False)


def test_load_labels_bad_input_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    good = json.dumps({"qid": "a", "cands": ["x", "y"], "permutation": [1, 0]})
    for body, msg in [
        (good + "\n{not json\n" + good + "\n", r"bad.jsonl:2: expected a JSON object"),
        (good + "\n" + json.dumps({"cands": ["x"]}) + "\n", r":2: expected a label object with field 'qid'"),
        (json.dumps({"qid": "a", "cands": ["x", "y"], "permutation": [0, 0]}) + "\n", r":1: .*permutation of 0..1"),
        (good + "\n" + good + "\n", r":2: duplicate label for query 'a'"),
        (json.dumps({"qid": "a", "cands": ["x"]}) + "\n", r":1: expected a 'permutation'"),
    ]:
        p.write_text(body)
        with pytest.raises(DataError, match=msg):
            load_labels(p)
    p.write_text(good + "\n" + good[:10])  # a cut-off last line (crash mid-write) is ignored
    assert list(load_labels(p)) == ["a"]


def test_shared_labels_import_and_teacher_report_matches_the_readme(tmp_path):
    """The shared Qwen labels: README says nDCG@10 0.477 (LLM) vs 0.649 (MiniLM) on 237 queries."""
    from intdistill.data import load_qrels

    labels = load_labels(SHARED / "scifact-llm-labels" / "labels.qwen2.5-coder-1.5b.n10.jsonl")
    assert len(labels) == 237
    assert all(sorted(l.permutation) == list(range(10)) for l in labels.values())
    qrels = load_qrels(SHARED / "scifact" / "qrels" / "train.tsv")
    rep = teacher_report(labels, qrels=qrels, n_resamples=2000)
    assert rep.n_judged == 237
    assert rep.teacher["nDCG@10"] == pytest.approx(0.477, abs=0.0015)
    assert rep.first_stage["nDCG@10"] == pytest.approx(0.649, abs=0.0015)
    assert rep.verdict == "worse"
    assert rep.identity_rate == pytest.approx(14 / 237)
    png = plot_positions(rep, tmp_path / "pos.png")
    assert png.stat().st_size > 5000
    assert sum(map(sum, rep.position_counts)) == 2370


def test_teacher_report_by_answers():
    corpus = {"a": Passage("a", "Paris is the capital of France."), "b": Passage("b", "Berlin is in Germany.")}
    queries = {"q": Query("q", "capital of France?", ("Paris",))}
    good = {"q": Label("q", ("b", "a"), (1, 0), ("[2] > [1]",), "m", "t", "h")}
    rep = teacher_report(good, queries=queries, corpus=corpus, n_resamples=100)
    assert rep.judged_by == "answers"
    assert rep.teacher["Acc@1"] == 1.0 and rep.first_stage["Acc@1"] == 0.0
    assert rep.teacher["RR@10"] == 1.0 and rep.first_stage["RR@10"] == 0.5
    with pytest.raises(ValueError, match="needs qrels"):
        teacher_report(good)


def test_open_llm_needs_an_endpoint_and_a_model_name():
    import argparse

    from intdistill.commands.common import add_llm_args, open_llm

    p = argparse.ArgumentParser()
    add_llm_args(p)
    with pytest.raises(DataError, match="no LLM endpoint"):
        with open_llm(p.parse_args([])):
            pass
    with pytest.raises(DataError, match="needs --llm-model"):
        with open_llm(p.parse_args(["--llm-base-url", "http://127.0.0.1:9/v1"])):
            pass
    with pytest.raises(DataError, match="--concurrency >= 1"):
        with open_llm(p.parse_args(["--llm-base-url", "http://127.0.0.1:9/v1", "--llm-model", "m", "--concurrency", "0"])):
            pass
    with open_llm(p.parse_args(["--llm-base-url", "http://127.0.0.1:9/v1", "--llm-model", "m"])) as client:
        assert client.model == "m"


def test_teacher_report_measures_agreement_between_shuffled_passes(tmp_path):
    corpus, queries, cands = _toy(nq=4, n=6)
    qrels = {q: {c[0]: 1} for q, c in cands.items()}
    cfg = ListwiseConfig(window=10, step=5, passes=3, shuffle=True, seed=0)
    label_candidates(cands, queries, corpus, FakeClient("oracle"), tmp_path / "o.jsonl", cfg, progress=False)
    label_candidates(cands, queries, corpus, FakeClient("identity"), tmp_path / "i.jsonl", cfg, progress=False)
    oracle = teacher_report(load_labels(tmp_path / "o.jsonl"), qrels=qrels, n_resamples=100)
    biased = teacher_report(load_labels(tmp_path / "i.jsonl"), qrels=qrels, n_resamples=100)
    # a teacher that ranks by content agrees with itself whatever the presentation order
    assert oracle.pass_agreement == 1.0 and oracle.n_multi_pass == 4
    # one that returns the shown order follows the shuffles: far from 1
    assert biased.n_multi_pass == 4 and biased.pass_agreement < 0.5
    assert any("agreement between passes" in line for line in biased.lines())
    label_candidates(cands, queries, corpus, FakeClient("oracle"), tmp_path / "s.jsonl", progress=False)
    single = teacher_report(load_labels(tmp_path / "s.jsonl"), qrels=qrels, n_resamples=100)
    assert single.pass_agreement is None and single.n_multi_pass == 0
    assert not any("agreement between passes" in line for line in single.lines())


class StubRanker:
    """Scores a (query, passage) pair by a number in the passage text ('score=N'); records the pairs."""

    name = "stub-ranker"

    def __init__(self):
        self.pairs = []

    def score_pairs(self, pairs, batch_size=64, progress=False):
        import numpy as np

        self.pairs += list(pairs)
        return np.array([float(re.search(r"score=(-?\d+)", p).group(1)) for _, p in pairs], dtype=np.float32)


def test_ranker_labels_order_by_score_ties_keep_the_first_stage_order():
    from intdistill.gate import ranker_labels

    corpus = {d: Passage(d, f"passage {d} score={s}", title="T") for d, s in
              (("a", 1), ("b", 3), ("c", 3), ("d", 0), ("e", 7))}
    ranker = StubRanker()
    labels = ranker_labels(ranker, {"q1": ("first?", ("a", "b", "c", "d")), "q2": ("second?", ("d", "e"))}, corpus)
    # q1 scores (1, 3, 3, 0): b and c tie at 3, b was first in the first stage -> (1, 2, 0, 3)
    assert labels["q1"].permutation == (1, 2, 0, 3) and labels["q1"].ranking == ["b", "c", "a", "d"]
    assert labels["q2"].permutation == (1, 0) and labels["q2"].template == "ranker"
    assert labels["q1"].model == "stub-ranker" and labels["q1"].outputs == ()
    # the ranker sees the query text and the passage as in training (title. text)
    assert ranker.pairs[0] == ("first?", corpus["a"].full_text()) and len(ranker.pairs) == 6
    with pytest.raises(DataError, match="query 'q' names candidate 'zz', not in the corpus"):
        ranker_labels(ranker, {"q": ("x?", ("a", "zz"))}, corpus)
    with pytest.raises(DataError, match="query 'q': expected a query text"):
        ranker_labels(ranker, {"q": ("  ", ("a",))}, corpus)


def test_teacher_report_of_a_ranker_says_ranker_and_has_no_repair_line():
    from intdistill.gate import ranker_labels

    # 24 lists; the first stage puts the relevant passage second, the ranker (by score) puts it first
    corpus = {f"{q}-{i}": Passage(f"{q}-{i}", f"text score={9 if i == 1 else 5 - i}") for q in range(24)
              for i in range(4)}
    lists = {f"q{q}": (f"question {q}?", tuple(f"{q}-{i}" for i in range(4))) for q in range(24)}
    qrels = {f"q{q}": {f"{q}-1": 1} for q in range(24)}
    rep = teacher_report(ranker_labels(StubRanker(), lists, corpus), qrels=qrels, n_resamples=1000,
                         subject="ranker")
    assert rep.first_stage["RR@10"] == 0.5 and rep.teacher["RR@10"] == 1.0  # hand-computed: rank 2 -> 1
    assert rep.verdict == "better" and rep.identity_rate == 0.0
    lines = rep.lines()
    assert "ranker" in lines[1] and "teacher" not in lines[1]
    assert lines[-1] == "verdict: the ranker is better than the first stage on nDCG@10"
    assert not any("calls repaired" in line for line in lines)
    assert rep.to_json()["subject"] == "ranker"
