"""The one significance rule (intdistill.significance.verdict) and everything that uses it."""

from __future__ import annotations

import pytest

from intdistill.data import Passage
from intdistill.significance import ALPHA, BETTER, SAME, WORSE, paired_test, verdict


def test_verdict_by_hand():
    assert ALPHA == 0.05
    assert verdict(+0.01, 0.049) == BETTER == "better"
    assert verdict(-0.01, 0.049) == WORSE == "worse"
    assert verdict(+0.20, 0.05) == SAME == "no significant difference"  # p must be strictly below alpha
    assert verdict(-0.20, 0.30) == SAME
    assert verdict(0.0, 0.0) == SAME  # no change is never significant
    assert verdict(+0.01, 0.08, alpha=0.1) == BETTER
    for bad in (0.0, 1.0, -0.1, 2):
        with pytest.raises(ValueError, match="alpha"):
            verdict(0.1, 0.01, alpha=bad)


def test_paired_test_verdict_is_the_rule_on_its_own_numbers():
    # 6 queries all up by 1: the exact sign-flip test gives p = 2 / 2**6 = 0.03125 < 0.05
    a = {f"q{i}": 0.0 for i in range(6)}
    up = paired_test(a, {q: 1.0 for q in a})
    assert up.exact and up.p_value == pytest.approx(2 / 64) and up.verdict() == "better"
    down = paired_test({q: 1.0 for q in a}, a)
    assert down.verdict() == "worse" and down.verdict(alpha=0.01) == SAME
    # 5 queries: the smallest exact p is 2 / 32 = 0.0625, never significant at 0.05
    five = {f"q{i}": 0.0 for i in range(5)}
    assert paired_test(five, {q: 1.0 for q in five}).verdict() == SAME


def test_teacher_report_verdict_uses_the_rule():
    from intdistill.gate import TeacherReport

    def report(teacher, p):
        return TeacherReport(judged_by="qrels", n_labels=1, n_judged=1, n_with_relevant=1,
                             teacher={"nDCG@10": teacher}, first_stage={"nDCG@10": 0.5}, p_values={"nDCG@10": p},
                             identity_rate=0.0, repair_rate=0.0, repairs={}, position_counts=((1,),),
                             main_measure="nDCG@10")

    assert report(0.6, 0.01).verdict == "better"
    assert report(0.4, 0.01).verdict == "worse"
    assert report(0.4, 0.06).verdict == SAME
    assert report(0.5, 0.0).verdict == SAME


def test_report_flags_follow_the_rule():
    from intdistill.report import comparison_table

    result = {"measures": ["nDCG@10"], "means": {"base": {"nDCG@10": 0.5}, "a": {"nDCG@10": 0.6},
                                                   "b": {"nDCG@10": 0.4}, "c": {"nDCG@10": 0.7}},
              "tests": {"a": {"nDCG@10": {"delta": 0.1, "p_value": 0.01}},
                        "b": {"nDCG@10": {"delta": -0.1, "p_value": 0.01}},
                        "c": {"nDCG@10": {"delta": 0.2, "p_value": 0.05}}}}
    rows = {r.split("|")[1].strip(): r for r in comparison_table(result)[2:]}
    assert rows["a"].endswith("**better** |") and rows["b"].endswith("**worse** |")
    assert "**" not in rows["c"] and "**" not in rows["base"]


def _dev(n: int):
    from intdistill.train.ranker import rerank_dev

    corpus = {f"d{i}": Passage(f"d{i}", f"passage {i}") for i in range(3)}
    lists = {f"q{i}": (f"question {i}", ("d0", "d1", "d2")) for i in range(n)}
    qrels = {q: {"d0": 1} for q in lists}  # the first stage always has the relevant passage first
    return rerank_dev(lists, corpus, qrels=qrels), corpus


def test_rerank_dev_judge_worse_better_and_same():
    dev, corpus = _dev(8)
    keep = {q: [3.0, 2.0, 1.0] for q in dev.lists}  # the first stage's own order
    same = dev.judge(keep, corpus)
    assert same.delta == 0 and same.verdict() == SAME and same.mean_a == pytest.approx(1.0)
    worst = {q: [1.0, 2.0, 3.0] for q in dev.lists}  # the relevant passage last: nDCG@10 = 1 / log2(4) = 0.5
    t = dev.judge(worst, corpus)
    assert t.mean_a == pytest.approx(1.0) and t.mean_b == pytest.approx(0.5)
    assert t.delta == pytest.approx(-0.5) and t.exact and t.p_value == pytest.approx(2 / 256)
    assert t.verdict() == "worse"
    # only 4 lists: the same change is not significant (smallest exact p = 2 / 16)
    dev4, _ = _dev(4)
    assert dev4.judge({q: [1.0, 2.0, 3.0] for q in dev4.lists}, corpus).verdict() == SAME
