"""Answer metrics: SQuAD v1.1 EM / F1 and DPR has-answer, Rust vs the pure-Python originals.

References: ``tests/reference_answers.py`` (official ``evaluate-v1.1.py`` logic; DPR's
``has_answer`` + ``SimpleTokenizer`` on the ``regex`` module). Real data: the shared SQuAD dev part.
"""

from __future__ import annotations

import json
import random
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

import reference_answers as ref
from intdistill import _core
from intdistill.answers import (
    SquadScores,
    accuracy_at_k,
    exact_match,
    f1,
    mean_accuracy,
    normalize_answer,
    squad_scores,
)
from intdistill.data import Passage, Query, Run

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SQUAD = DATA / "squad-dev" / "dev-v1.1.part.json"

# --- strategies ---------------------------------------------------------------------------------

# Characters that matter to the rules (articles, case, punctuation, Python-only whitespace
# U+001C..U+001F, NBSP, combining marks, final sigma, the Turkish dotted I) mixed with any
# character assigned in this interpreter's Unicode version.
_TRICKY = list("aAnNtThHeE _-.,'\"!?Σσς°½²€–") + [
    "\x1c", "\x1f", "\xa0", "\u2009", "\u3000", "\u0301", "\u0345", "\u200b", "\ufeff",
    "İ", "ß", "Ǆ", "ﬁ", "Ⓐ", "Ⅸ", "\t", "\n", "é", "ü",
]
_ANY = st.characters(exclude_categories=("Cs", "Cn"))
TEXT = st.text(st.one_of(st.sampled_from(_TRICKY), _ANY), max_size=40)
# Whole words, so that articles and shared tokens come up often.
_WORDS = st.sampled_from(
    ["the", "The", "a", "An", "cat", "Cat.", "sat", "down", "x", "(x)", "θέ", "ΣΑΣ", "é", "e\u0301",
     "1990", "1990s", ","]
)
PHRASE = st.lists(st.one_of(_WORDS, TEXT), max_size=8).map(" ".join)

SETTINGS = settings(max_examples=200, deadline=None)


def _assigned_code_points() -> list[str]:
    """Every code point assigned in this interpreter's Unicode version, surrogates excluded."""
    return [
        chr(i)
        for i in range(sys.maxunicode + 1)
        if unicodedata.category(chr(i)) not in ("Cn", "Cs")
    ]


# --- normalisation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Cat sat!", "cat sat"),
        ("  an apple,  a pear ", "apple pear"),
        ("theatre and the-end", "theatre and theend"),  # punctuation goes before articles
        ("A.", ""),
        ("ÉCOLE a°the", "école °"),  # "°" is not a word character: \b on both sides of "a"
        ("theé", "theé"),  # "é" is: no boundary, no article
        ("ΟΔΟΣ ΣΑΣ", "οδος σας"),  # final sigma
        ("x\x1cy", "x y"),  # U+001C splits in str.split()
        ("", ""),
    ],
)
def test_normalize_hand_values(text, expected):
    assert normalize_answer(text) == expected
    assert ref.normalize_answer(text) == expected


@SETTINGS
@given(TEXT)
def test_normalize_matches_official(s):
    assert _core.normalize_answer(s) == ref.normalize_answer(s)


@SETTINGS
@given(PHRASE)
def test_normalize_phrases_match_official(s):
    assert _core.normalize_answer(s) == ref.normalize_answer(s)


def test_every_code_point_matches_python():
    """Sweep all assigned code points through normalisation and DPR tokenisation, each in a
    context that exercises \\b, lower-casing (final sigma) and splitting."""
    bad_norm, bad_tok = [], []
    for c in _assigned_code_points():
        s = f"the{c}an{c}Σ{c}x {c}a"
        if _core.normalize_answer(s) != ref.normalize_answer(s):
            bad_norm.append(hex(ord(c)))
        t = f"{c}a{c} {c}Σ{c}"
        if _core.dpr_tokenize(t) != ref.dpr_tokenize(t):
            bad_tok.append(hex(ord(c)))
    assert bad_norm == [] and bad_tok == []


# --- EM / F1 ------------------------------------------------------------------------------------


def test_em_f1_hand_values():
    # pred tokens [cat, sat]; gold tokens [cat, sat, down]: P = 2/2, R = 2/3, F1 = 2PR/(P+R) = 0.8
    assert exact_match("the Cat sat", ["a cat sat down"]) == 0.0
    assert f1("the Cat sat", ["a cat sat down"]) == pytest.approx(0.8, abs=1e-15)
    # max over golds
    assert exact_match("The cat.", ["dog", "cat"]) == 1.0
    assert f1("cat dog", ["cat", "bird"]) == pytest.approx(2 * (1 / 2 * 1) / (1 / 2 + 1))
    # Counter overlap: "x x y" & "x y y" = {x: 1, y: 1}: P = R = 2/3
    assert f1("x x y", ["x y y"]) == pytest.approx(2 / 3, abs=1e-15)
    # nothing in common, or a gold that normalises to nothing
    assert f1("cat", ["dog"]) == 0.0
    assert exact_match("", ["The"]) == 1.0 and f1("", ["The"]) == 0.0


@SETTINGS
@given(st.lists(st.tuples(PHRASE, st.lists(PHRASE, min_size=1, max_size=3)), max_size=8))
def test_squad_em_f1_matches_official(items):
    preds = [p for p, _ in items]
    golds = [g for _, g in items]
    em, f = _core.squad_em_f1(preds, golds)
    em_ref, f_ref = ref.squad_em_f1(preds, golds)
    assert em.dtype == np.float64 and f.dtype == np.float64
    assert em.tolist() == em_ref  # exact: same float operations in the same order
    assert f.tolist() == f_ref


def test_squad_em_f1_bad_input_names_the_value():
    with pytest.raises(ValueError, match=r"expected len\(golds\) == len\(preds\) == 2, got 1"):
        _core.squad_em_f1(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match=r"golds\[1\] is empty"):
        _core.squad_em_f1(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="got the string 'cat'"):
        exact_match("cat", "cat")
    with pytest.raises(ValueError, match="at least one gold answer"):
        f1("cat", [])


# --- has-answer ---------------------------------------------------------------------------------


def test_dpr_tokenize_hand_values():
    assert _core.dpr_tokenize("Hello, World-2!") == ["hello", ",", "world", "-", "2", "!"]
    assert _core.dpr_tokenize("Café\u200bx") == ["cafe\u0301", "x"]  # NFD; U+200B is Cf
    assert _core.dpr_tokenize(" \t\n") == []


def test_has_answer_hand_values():
    passages = [["The year 1990s was fine.", "In 1990, it rained."], ["Ⓐ ß É"]]
    answers = [["1990"], ["é", "nothing"]]
    assert _core.has_answer(passages, answers) == [[False, True], [True]]
    assert _core.has_answer([["a b c"]], [["B C"]]) == [[True]]
    assert _core.has_answer([["a b c"]], [["a c"]]) == [[False]]  # contiguous only
    assert _core.has_answer([["a b"]], [[]]) == [[False]]


@SETTINGS
@given(
    st.lists(
        st.tuples(st.lists(PHRASE, max_size=3), st.lists(PHRASE, max_size=3)),
        max_size=6,
    )
)
def test_has_answer_matches_dpr(items):
    # Answers without tokens are an input error (DPR would match them everywhere): drop them here.
    items = [(ps, [a for a in ans if ref.dpr_tokenize(a)]) for ps, ans in items]
    # Let answers occur in passages often: append each query's answers to its first passage.
    items = [((ps[:1] and [ps[0] + " " + " ".join(ans)]) + ps[1:], ans) for ps, ans in items]
    passages = [ps for ps, _ in items]
    answers = [a for _, a in items]
    assert _core.has_answer(passages, answers) == ref.has_answer_batch(passages, answers)


@SETTINGS
@given(TEXT)
def test_dpr_tokenize_matches_dpr(s):
    assert _core.dpr_tokenize(s) == ref.dpr_tokenize(s)


def test_has_answer_bad_input_names_the_value():
    with pytest.raises(ValueError, match=r"expected len\(answers\) == len\(passages\) == 1, got 2"):
        _core.has_answer([["p"]], [["a"], ["b"]])
    with pytest.raises(ValueError, match=r"answers\[0\]\[1\] = \" \\t\" has no tokens"):
        _core.has_answer([["p"]], [["a", " \t"]])


# --- the Python layer ---------------------------------------------------------------------------


def test_squad_scores_small():
    queries = {
        "q1": Query("q1", "?", ("a cat sat down",)),
        "q2": Query("q2", "?", ("Paris", "paris, France")),
    }
    s = squad_scores({"q1": "the Cat sat", "q2": "Paris!"}, queries)
    assert isinstance(s, SquadScores)
    assert s.n == 2 and s.qids == ("q1", "q2")
    assert s.em_per_query.tolist() == [0.0, 1.0]
    assert s.f1_per_query.tolist() == pytest.approx([0.8, 1.0])
    assert s.em == 0.5 and s.f1 == pytest.approx(0.9)
    with pytest.raises(ValueError):
        s.em_per_query[0] = 1.0  # read-only


def test_squad_scores_bad_input():
    q = {"q1": Query("q1", "?", ("x",))}
    with pytest.raises(ValueError, match=r"1 missing, e.g. \['q1'\]"):
        squad_scores({}, q)
    with pytest.raises(ValueError, match=r"qids not in queries, e.g. \['q9'\]"):
        squad_scores({"q1": "x", "q9": "y"}, q)
    with pytest.raises(ValueError, match="query 'q2' has no answers"):
        squad_scores({"q1": "x", "q2": "y"}, {**q, "q2": Query("q2", "?")})


def test_accuracy_at_k_small():
    corpus = {
        "d1": Passage("d1", "nothing here", title="Paris"),  # the title is not searched
        "d2": Passage("d2", "the capital is Paris."),
        "d3": Passage("d3", "also nothing"),
    }
    queries = {
        "q1": Query("q1", "?", ("Paris",)),
        "q2": Query("q2", "?", ("capital",)),
        "q3": Query("q3", "?", ("x",)),
    }
    # q1: d1 and d2 tie; docid descending puts d2 first (trec_eval).
    run = {"q1": {"d1": 1.0, "d2": 1.0, "d3": 0.5}, "q2": {"d3": 2.0, "d1": 1.0, "d2": 0.0}}
    acc = accuracy_at_k(run, queries, corpus, [1, 2, 3])
    assert acc == {
        "q1": {1: 1.0, 2: 1.0, 3: 1.0},
        "q2": {1: 0.0, 2: 0.0, 3: 1.0},
        "q3": {1: 0.0, 2: 0.0, 3: 0.0},  # not in the run: retrieved nothing
    }
    assert accuracy_at_k(Run(run), queries, corpus, [1, 2, 3]) == acc
    assert mean_accuracy(acc) == pytest.approx({1: 1 / 3, 2: 1 / 3, 3: 2 / 3})


def test_accuracy_at_k_bad_input():
    corpus = {"d1": Passage("d1", "text")}
    queries = {"q1": Query("q1", "?", ("text",))}
    with pytest.raises(ValueError, match=r"docids not in the corpus, e.g. \['zz'\]"):
        accuracy_at_k({"q1": {"d1": 1.0, "zz": 0.0}}, queries, corpus, [1])
    with pytest.raises(ValueError, match=r"qids not in queries, e.g. \['q7'\]"):
        accuracy_at_k({"q7": {"d1": 1.0}}, queries, corpus, [1])
    with pytest.raises(ValueError, match="query 'q2' has no answers"):
        accuracy_at_k({}, {**queries, "q2": Query("q2", "?")}, corpus, [1])
    for ks in ([], [0], [1.5], [True]):
        with pytest.raises(ValueError, match="positive int ks"):
            accuracy_at_k({}, queries, corpus, ks)


# --- real data: SQuAD v1.1 dev (36 articles, 7,672 questions) -----------------------------------


@pytest.fixture(scope="module")
def squad():
    """(dataset, rows): rows are (qid, question, gold answer texts, context, paragraph id)."""
    assert SQUAD.is_file(), f"missing shared data: {SQUAD}"
    dataset = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    rows = []
    for art in dataset:
        for i, par in enumerate(art["paragraphs"]):
            for qa in par["qas"]:
                golds = [a["text"] for a in qa["answers"]]
                rows.append((qa["id"], qa["question"], golds, par["context"], f"{art['title']}#{i}"))
    assert len(rows) == 7672
    return dataset, rows


def _predictions(rows, kind: str) -> dict[str, str]:
    """Deterministic predictions of one kind for every question."""
    rng = random.Random(f"intdistill-squad-{kind}")
    preds = {}
    for qid, _, golds, context, _ in rows:
        if kind == "gold":
            preds[qid] = golds[0]
        elif kind == "corrupted":  # case, an article, punctuation; a word dropped or added
            words = golds[0].split()
            if len(words) > 1 and rng.random() < 0.5:
                words.pop(rng.randrange(len(words)))
            else:
                words.append(rng.choice(context.split()))
            preds[qid] = "The " + " ".join(words).upper() + rng.choice([".", "!", "", " ,"])
        elif kind == "span":  # a random span of 1..8 words of the context
            words = context.split()
            start = rng.randrange(len(words))
            preds[qid] = " ".join(words[start : start + rng.randint(1, 8)])
        elif kind == "empty":
            preds[qid] = ""
    return preds


@pytest.mark.parametrize("kind", ["gold", "corrupted", "span", "empty"])
def test_squad_dev_em_f1_equals_official(squad, kind):
    dataset, rows = squad
    preds = _predictions(rows, kind)
    golds = [g for _, _, g, _, _ in rows]
    pred_list = [preds[qid] for qid, *_ in rows]
    em, f = _core.squad_em_f1(pred_list, golds)
    em_ref, f_ref = ref.squad_em_f1(pred_list, golds)
    assert em.tolist() == em_ref and f.tolist() == f_ref  # all 7,672, bit for bit

    queries = {qid: Query(qid, q, tuple(g)) for qid, q, g, _, _ in rows}
    scores = squad_scores(preds, queries)
    official = ref.evaluate(dataset, preds)
    assert 100 * scores.em == pytest.approx(official["exact_match"], rel=1e-12)
    assert 100 * scores.f1 == pytest.approx(official["f1"], rel=1e-12)
    if kind == "gold":
        assert scores.em == 1.0 and scores.f1 == 1.0
    if kind == "empty":
        assert scores.f1 == 0.0
    if kind in ("corrupted", "span"):
        assert 0.0 < scores.f1 < 1.0


_WORD = regex.compile(r"[\p{L}\p{N}\p{M}]")


def test_squad_dev_own_paragraph_has_answer(squad):
    """Each question's own paragraph contains one of its answers. Individually, 56 of the 25,710
    gold strings are not found: their annotated span starts or ends inside a word (e.g. "Japan"
    in "Japanese", "8" in "18"), so its tokens differ from the paragraph's."""
    _, rows = squad
    passages = [[ctx] for _, _, _, ctx, _ in rows]
    answers = [g for _, _, g, _, _ in rows]
    hits = _core.has_answer(passages, answers)
    assert hits == ref.has_answer_batch(passages, answers)
    assert sum(not h[0] for h in hits) == 0

    single = [(a, ctx) for _, _, golds, ctx, _ in rows for a in golds]
    hits = _core.has_answer([[ctx] for _, ctx in single], [[a] for a, _ in single])
    missed = [(a, ctx) for (a, ctx), h in zip(single, hits) if not h[0]]
    assert len(single) == 25710 and len(missed) == 56

    def cuts_a_word(a, ctx):
        starts = [i for i in range(len(ctx)) if ctx.startswith(a, i)]
        return starts and all(
            (s > 0 and _WORD.match(ctx[s - 1]) and _WORD.match(ctx[s]))
            or (e < len(ctx) and _WORD.match(ctx[e - 1]) and _WORD.match(ctx[e]))
            for s, e in ((s, s + len(a)) for s in starts)
        )

    assert all(cuts_a_word(a, ctx) for a, ctx in missed)


def test_squad_dev_accuracy_at_k(squad):
    """Acc@k over a DPR-like run: 20 passages per question, its own paragraph at a random rank
    (or absent), the rest random paragraphs; checked against the DPR reference on a sample."""
    _, rows = squad
    corpus = {}
    for _, _, _, ctx, pid in rows:
        corpus.setdefault(pid, Passage(pid, ctx))
    pids = sorted(corpus)
    rng = random.Random(7)
    run = Run()
    for qid, _, _, _, pid in rows:
        docs = [p for p in rng.sample(pids, 21) if p != pid][:20]
        if rng.random() < 0.8:
            docs[rng.randrange(20)] = pid
        run[qid] = {d: float(20 - r) for r, d in enumerate(docs)}
    queries = {qid: Query(qid, q, tuple(g)) for qid, q, g, _, _ in rows}
    ks = [1, 5, 20]
    acc = accuracy_at_k(run, queries, corpus, ks)
    assert list(acc) == list(queries)

    sample = rows[::50]
    for qid, _, golds, _, _ in sample:
        hits = [ref.has_answer(golds, corpus[d].text) for d in run.ranked(qid)]
        assert acc[qid] == {k: float(any(hits[:k])) for k in ks}, qid
    means = mean_accuracy(acc)
    assert means[1] <= means[5] <= means[20] and means[20] >= 0.8
