"""The ranker's lexical term (intdistill.lexical): BM25 by hand, against bm25s, saved and loaded, bad inputs;
and the composite ranker with the term: the sum is exact on every path, it saves and loads, training learns
around it, and the command line and the pipeline take its weight."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from intdistill.lexical import BM25, FILE, STOPWORDS_EN
from intdistill.models import Ranker, Retriever

from test_ranker_composite import WORDS, _texts  # noqa: E402


# ---------------------------------------------------------------------------------------------- BM25 itself
def test_hand_computed_values():
    """N = 3 documents, k1 = 1.5, b = 0.75, no stemming or stop words: every number below by hand."""
    bm = BM25.fit(["cat mat", "dog", "cat cat dog"], stemmer=None, stopwords=False)
    assert bm.n_docs == 3 and bm.avgdl == 2.0 and bm.df == {"cat": 2, "mat": 1, "dog": 2}
    idf_cat, idf_mat = math.log(1 + 1.5 / 2.5), math.log(1 + 2.5 / 1.5)  # ln(1 + (N - df + .5) / (df + .5))
    assert bm.idf("cat") == pytest.approx(idf_cat) and bm.idf("unseen") == pytest.approx(math.log(1 + 3.5 / 0.5))
    # doc 0: |d| = avgdl, so the length norm is k1; tf 1 each -> 1 / (1 + 1.5) per term
    # doc 2: |d| = 3 -> norm 1.5 * (0.25 + 0.75 * 1.5) = 2.0625; tf(cat) = 2 -> 2 / 4.0625
    want = [(idf_cat + idf_mat) / 2.5, 0.0, idf_cat * 2 / 4.0625]
    np.testing.assert_allclose(bm.scores("cat mat", ["cat mat", "dog", "cat cat dog"]), want, rtol=1e-12)
    assert bm.max_score("cat mat") == pytest.approx(idf_cat + idf_mat)
    # the bound: a perfect-length passage with each term once scores exactly 1 / (1 + k1)
    assert bm.normalized("mat cat cat", ["cat mat"])[0] == pytest.approx(0.4)  # a repeated query term counts once


def test_tokenizer_lowercases_drops_stop_words_and_stems():
    bm = BM25.fit(["x"])
    assert bm.tokenize("The Proteins of a CELL, binding: x 42") == ["protein", "cell", "bind", "42"]
    assert "the" in STOPWORDS_EN and len(STOPWORDS_EN) == 33
    plain = BM25.fit(["x"], stemmer=None, stopwords=False)
    assert plain.tokenize("The Proteins") == ["the", "proteins"]


def test_normalized_is_in_0_1_and_zero_without_query_terms():
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 40))) for _ in range(50)]
    bm = BM25.fit(texts)
    for q in ("cell protein gene", "cancer cancer drug", "virus"):
        s = bm.normalized(q, texts)
        assert s.min() >= 0 and s.max() < 1 and s.max() > 0
    assert not bm.normalized("the of a", texts).any() and bm.max_score("the of a") == 0  # only stop words
    assert not bm.normalized("", texts).any()
    pairs = [("cell gene", texts[0]), ("virus", texts[1]), ("cell gene", texts[2])]
    np.testing.assert_allclose(bm.normalized_pairs(pairs), [bm.normalized(q, [t])[0] for q, t in pairs], rtol=1e-6)


TOKENS = tuple(WORDS) + ("the", "of", "a", "x", "42", "1995", "cell-protein,", "Gene.", "TUMOURS", "(dose)")
word_lists = st.lists(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=30), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(docs=word_lists, query=st.lists(st.sampled_from(TOKENS), min_size=1, max_size=6),
       k1=st.floats(0.1, 3.0), b=st.floats(0.0, 1.0), stem=st.booleans())
def test_matches_bm25s(docs, query, k1, b, stem):
    """The trusted peer: bm25s's default (Lucene) BM25, over its own tokenizer with the same stop words and
    stemmer (stop words, 1-character tokens, digits, punctuation and case included). A repeated query term
    counts once here, so the peer gets each distinct term once."""
    import bm25s
    import Stemmer

    texts = [" ".join(d) for d in docs]
    assume(any(BM25.fit(["x"]).tokenize(t) for t in texts))  # bm25s refuses a corpus of stop words only
    q = " ".join(query)
    stemmer = Stemmer.Stemmer("english") if stem else None
    ref = bm25s.BM25(k1=k1, b=b)
    ref.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False)
    q_terms = [t for t in dict.fromkeys(bm25s.tokenize([q], stopwords="en", stemmer=stemmer, return_ids=False,
                                                       show_progress=False)[0]) if t in ref.vocab_dict]
    want = ref.get_scores(q_terms) if q_terms else np.zeros(len(texts))
    ours = BM25.fit(texts, k1=k1, b=b, stemmer="english" if stem else None)
    np.testing.assert_allclose(ours.scores(q, texts), want, rtol=1e-5, atol=1e-6)


def test_save_load_round_trip(tmp_path):
    bm = BM25.fit(["cell protein", "gene virus protein"], k1=1.2, b=0.5)
    bm.save(tmp_path)
    again = BM25.load(tmp_path)
    assert again.to_json() == bm.to_json()
    np.testing.assert_array_equal(again.scores("protein virus", ["cell protein", "x"]),
                                  bm.scores("protein virus", ["cell protein", "x"]))


def test_bad_statistics_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=FILE):
        BM25.load(tmp_path)
    path = tmp_path / FILE
    path.write_text("{not json")
    with pytest.raises(ValueError, match=rf"{FILE}: not valid JSON"):
        BM25.load(tmp_path)
    good = BM25.fit(["cell protein"]).to_json()
    for change, message in (({"format": 9}, "format 9 is not supported"),
                            ({"df": {"cell": 0}}, "df: expected"),
                            ({"df": {"cell": True}}, "df: expected"),
                            ({"df": {"cell": 5}}, "df: expected"),  # more documents than the corpus has
                            ({"k1": -1}, "k1: expected a finite number > 0.0, got -1"),
                            ({"b": 2}, "b: expected a number in"),
                            ({"stopwords": "no"}, "stopwords: expected true or false"),
                            ({"stemmer": 3}, "stemmer: expected a language name or null"),
                            ({"stemmer": "klingon"}, "no 'klingon' stemmer")):
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(ValueError, match=rf"{FILE}: .*{message}"):
            BM25.load(tmp_path)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "avgdl"}))
    with pytest.raises(ValueError, match="missing field 'avgdl'"):
        BM25.load(tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="expected at least one text"):
        BM25.fit([])
    with pytest.raises(TypeError, match=r"texts\[1\]: expected str"):
        BM25.fit(["a b", None])
    with pytest.raises(ValueError, match="b: expected a number in"):
        BM25.fit(["a b"], b=1.5)
    with pytest.raises(ValueError, match="k1: expected"):
        BM25.fit(["a b"], k1=0)


# ---------------------------------------------------------------------------------------------- in the ranker
@pytest.fixture(scope="module")
def corpus_texts():
    return _texts(random.Random(11), 40, 3, 50)


@pytest.mark.parametrize("kind", ["query-tower", "twin", "anchored-cross"])
def test_the_sum_is_first_stage_plus_the_lexical_term(kind, first_stage, first_stage_dir, corpus_texts):
    ranker = Ranker.build(kind, first_stage=first_stage_dir, max_length=64, device="cpu", lexical_weight=7.5,
                          lexical_corpus=corpus_texts)
    bm = BM25.fit(corpus_texts)
    rng = random.Random(1)
    queries = _texts(rng, 6, 1, 6)
    lists = [rng.sample(corpus_texts, rng.randint(1, 9)) for _ in queries]  # mixed lengths
    with torch.no_grad():
        logits = ranker.list_logits(queries, lists)
    for i, (q, texts) in enumerate(zip(queries, lists)):
        cos = first_stage.encode_passages(texts) @ first_stage.encode_queries([q])[0]
        want = 20.0 * cos + 7.5 * bm.normalized(q, texts)
        np.testing.assert_allclose(logits[i, : len(texts)].numpy(), want, atol=1e-4)
        np.testing.assert_allclose(ranker.score(q, texts), want, atol=1e-4)
        assert torch.all(logits[i, len(texts):] == 0)


def test_saves_and_loads_with_the_term(first_stage_dir, corpus_texts, tmp_path):
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(0)
    ranker = Ranker.build("query-tower", first_stage=first_stage_dir, device="cpu", lexical_weight=30,
                          lexical_corpus=corpus_texts)
    with torch.no_grad():
        for p in ranker.query_encoder.parameters():
            p.add_(0.02 * torch.randn_like(p))
    pairs = [(q, t) for q in ("cell gene", "virus dose trial") for t in corpus_texts[:7]]
    out = ranker.save(tmp_path / "r")
    meta = json.loads((out / "intdistill_ranker.json").read_text())
    assert meta["lexical_weight"] == 30 and (out / FILE).is_file()
    again = Ranker.load(out, device="cpu")
    assert again.lexical_weight == 30 and again.lexical.to_json() == ranker.lexical.to_json()
    np.testing.assert_allclose(again.score_pairs(pairs), ranker.score_pairs(pairs), atol=1e-5)
    SentenceTransformer(str(out), device="cpu")  # the trainable part still loads on its own
    (out / FILE).unlink()
    with pytest.raises(FileNotFoundError, match="no lexical statistics"):
        Ranker.load(out, device="cpu")
    meta["lexical_weight"] = -1
    (out / "intdistill_ranker.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="lexical_weight: expected a finite number >= 0, got -1"):
        Ranker.load(out, device="cpu")


def test_weight_zero_is_no_term_and_bad_weights_are_refused(first_stage_dir, corpus_texts, tmp_path):
    ranker = Ranker.build("query-tower", first_stage=first_stage_dir, device="cpu", lexical_weight=0,
                          lexical_corpus=corpus_texts)
    assert ranker.lexical is None
    out = ranker.save(tmp_path / "r0")
    assert not (out / FILE).exists() and Ranker.load(out, device="cpu").lexical is None
    (out / FILE).write_text("{}")  # a stale file from an earlier save with the term goes
    ranker.save(out)
    assert not (out / FILE).exists()
    with pytest.raises(ValueError, match="needs lexical_corpus"):
        Ranker.build("query-tower", first_stage=first_stage_dir, device="cpu", lexical_weight=1.0)
    for bad in (-1.0, float("inf"), True):
        with pytest.raises(ValueError, match="lexical_weight: expected"):
            Ranker(bi="frozen", query_encoder=ranker.query_encoder, passage_encoder=ranker.query_encoder,
                   lexical=BM25.fit(corpus_texts), lexical_weight=bad)


def test_stage_2_names_the_teacher_with_its_lexical_term(first_stage_dir, corpus_texts):
    """The teacher-score cache and resuming key on the lexical weight and statistics, which are not tensors:
    the same towers at another weight (or without the term) are another teacher. Without the term the key is
    what it always was, so older caches and checkpoints still match."""
    from intdistill.train.retriever import module_fingerprint, teacher_key

    plain = Ranker.build("query-tower", first_stage=first_stage_dir, device="cpu")
    keys = {teacher_key(Ranker.build("query-tower", first_stage=first_stage_dir, device="cpu", lexical_weight=w,
                                     lexical_corpus=texts))
            for w, texts in ((10, corpus_texts), (30, corpus_texts), (30, corpus_texts[:20]))}
    assert len(keys) == 3 and teacher_key(plain) not in keys
    assert teacher_key(plain) == module_fingerprint(plain, plain.max_length)


def test_training_learns_around_the_fixed_term(first_stage_dir, corpus_texts):
    """The lexical term has no parameters and no graph: the loss is ListMLE of first stage + 10 x the term
    (computed here by hand), and its gradient reaches the query tower only."""
    from intdistill.losses import listmle

    ranker = Ranker.build("query-tower", first_stage=first_stage_dir, device="cpu", lexical_weight=10,
                          lexical_corpus=corpus_texts)
    ranker.eval()  # no dropout, so the logits can be compared; gradients flow all the same
    queries, lists = ["cell gene", "virus"], [corpus_texts[:5], corpus_texts[5:8]]
    logits = ranker.list_logits(queries, lists)
    perm = torch.tensor([[4, 3, 2, 1, 0], [2, 1, 0, -1, -1]])
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    bm, fs = BM25.fit(corpus_texts), Retriever.load(first_stage_dir, device="cpu")
    want = torch.zeros(2, 5)
    for i, (q, texts) in enumerate(zip(queries, lists)):
        cos = fs.encode_passages(texts) @ fs.encode_queries([q])[0]
        want[i, : len(texts)] = torch.from_numpy(20.0 * cos + 10 * bm.normalized(q, texts)).float()
    loss = listmle(logits, perm, mask)
    assert loss.item() == pytest.approx(listmle(want, perm, mask).item(), abs=1e-4)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ranker.query_encoder.parameters())
    assert all(p.grad is None for p in ranker.passage_encoder.parameters())
    names = {n for n, _ in ranker.named_parameters()}
    assert not any("lexical" in n for n in names)


# ---------------------------------------------------------------------------------------------- command line
NAMES = "amber basalt cobalt dahlia ember fennel garnet hazel indigo jasper".split()


def _lexical_qa(root):
    """10 questions, each naming its answer passage's rare word; the first stage puts the answer second."""
    from intdistill.candidates import Candidates
    from intdistill.data import dump_jsonl

    root.mkdir(parents=True, exist_ok=True)
    n = len(NAMES)
    dump_jsonl([{"_id": f"d{i}", "title": "", "text": f"The {w} valley is where the old mill stands."}
                for i, w in enumerate(NAMES)], root / "corpus.jsonl")
    dump_jsonl([{"_id": f"q{i}", "text": f"Which mill is in the {w} valley?", "answers": [w]}
                for i, w in enumerate(NAMES)], root / "queries.jsonl")
    Candidates({f"q{i}": ([f"d{(i + 1) % n}", f"d{i}", f"d{(i + 2) % n}"], [3.0, 2.0, 1.0], "")
                for i in range(n)}, "first-stage").save(root / "cands.jsonl")
    return root


def test_train_ranker_cli_and_config_take_the_weight(tmp_path, tiny_bert_dir, capsys):
    from intdistill import cli
    from intdistill.stages.training import TrainRankerConfig

    d = _lexical_qa(tmp_path / "qa")
    out = tmp_path / "ranker"
    argv = ["train-ranker", "--corpus", str(d / "corpus.jsonl"), "--candidates", str(d / "cands.jsonl"),
            "--queries", str(d / "queries.jsonl"), "--label-source", "gold-first", "--out", str(out),
            "--retriever", str(tiny_bert_dir), "--epochs", "1", "--eval-every", "0", "--no-progress",
            "--lexical-weight", "1000"]
    assert cli.main(argv) == 0
    ranker = Ranker.load(out, device="cpu")
    assert ranker.lexical_weight == 1000 and ranker.lexical.n_docs == len(NAMES)
    for i, w in enumerate(NAMES):  # the rare word decides: the answer passage comes first
        texts = [f"The {NAMES[(i + 1) % len(NAMES)]} valley is where the old mill stands.",
                 f"The {w} valley is where the old mill stands."]
        assert np.argmax(ranker.score(f"Which mill is in the {w} valley?", texts)) == 1
    with pytest.raises(SystemExit):
        cli.main(argv[:-1] + ["-1"])
    assert "--lexical-weight: expected a finite number >= 0, got '-1'" in capsys.readouterr().err
    t = TrainRankerConfig.from_table({"lexical_weight": 30}, where="[ranker]", corpus="c", out="o")
    assert t.lexical_weight == 30.0 and "--lexical-weight" in t.argv()
    assert TrainRankerConfig(corpus="c", out="o").lexical_weight == 0.0
    with pytest.raises(ValueError, match=r"\[ranker\] lexical_weight: expected a finite number >= 0, got -2"):
        TrainRankerConfig.from_table({"lexical_weight": -2}, where="[ranker]", corpus="c", out="o")


def test_label_report_judges_a_lexical_ranker_against_its_untrained_anchor(tmp_path, tiny_bert_dir, capsys):
    """label-report --ranker adds the labels' share for a ranker with the term: the same lists judged against
    the untrained first stage + BM25. An untrained ranker equals its anchor; a ranker without the term, or one
    that keeps no frozen first stage, gets no such table."""
    from intdistill import cli
    from intdistill.stages import (RankerCheck, check_against_anchor, check_ranker, check_ranker_and_anchor,
                                   lexical_anchor)
    from intdistill.stages.training import read_lists, with_query_texts
    from intdistill.data import load_corpus, load_queries

    d = _lexical_qa(tmp_path / "qa")
    corpus = load_corpus(d / "corpus.jsonl")
    texts = [p.full_text() for p in corpus.values()]
    untrained = Ranker.build("query-tower", first_stage=tiny_bert_dir, device="cpu", lexical_weight=1000,
                             lexical_corpus=texts).save(tmp_path / "untrained")
    plain = Ranker.build("query-tower", first_stage=tiny_bert_dir, device="cpu").save(tmp_path / "plain")
    queries = load_queries(d / "queries.jsonl")
    lists = with_query_texts(read_lists(str(d / "cands.jsonl"))[0], queries, "cands", "list")
    report = check_against_anchor(untrained, lists, corpus, RankerCheck(device="cpu"), queries=queries)
    assert report.baseline == "anchor" and report.identity_rate == 1.0
    assert all(report.teacher[m] == report.first_stage[m] for m in report.teacher)
    assert check_against_anchor(plain, lists, corpus, RankerCheck(device="cpu"), queries=queries) is None
    twin = Ranker.build("twin", first_stage=tiny_bert_dir, device="cpu", lexical_weight=5, lexical_corpus=texts)
    assert lexical_anchor(twin) is None
    # the pipeline's form: both reports from one load, the same as the two calls apart
    loads = []
    real_load = Ranker.load
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Ranker, "load", classmethod(lambda cls, *a, **k: loads.append(a) or real_load(*a, **k)))
        main, share = check_ranker_and_anchor(untrained, lists, corpus, RankerCheck(device="cpu"), queries=queries)
        assert len(loads) == 1
        assert main == check_ranker(untrained, lists, corpus, RankerCheck(device="cpu"), queries=queries)
        assert share == report and len(loads) == 2
        assert check_ranker_and_anchor(plain, lists, corpus, RankerCheck(device="cpu"), queries=queries)[1] is None

    argv = ["label-report", "--ranker", str(untrained), "--candidates", str(d / "cands.jsonl"), "--queries",
            str(d / "queries.jsonl"), "--corpus", str(d / "corpus.jsonl"), "--device", "cpu"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "verdict: the ranker is better than the first stage on nDCG@10" in out  # the rare word decides
    assert "the labels' share: the ranker against its untrained anchor" in out
    assert "verdict: no significant difference on nDCG@10 (p=1.000)" in out
    assert cli.main(argv + ["--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["verdict"] == "better" and got["vs_anchor"]["baseline"] == "anchor"
    assert cli.main([*argv[:2], str(plain), *argv[3:]]) == 0
    assert "labels' share" not in capsys.readouterr().out
