"""The composite ranker (issue 11): it starts exactly at the first stage's order, on random lists of mixed
lengths; it saves and loads exactly; its trainable part loads in sentence-transformers; training moves only
what should move."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from intdistill.data import Passage
from intdistill.losses import listmle
from intdistill.models import Ranker
from intdistill.models.ranker import KINDS

WORDS = ("cell protein gene tumour virus dose trial mouse brain insulin liver heart blood risk rate effect "
         "study cancer drug lung bone acid factor level").split()
ANCHORED = [k for k, v in KINDS.items() if v.bi != "none"]


def _texts(rng, n, lo, hi):
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))) for _ in range(n)]


@pytest.fixture(scope="module")
def pretrained_cross_dir(tiny_bert_dir, tmp_path_factory):
    """A cross-encoder with a trained-looking head (nonzero), as a user's --model would be."""
    torch.manual_seed(3)
    out = tmp_path_factory.mktemp("cross")
    r = Ranker.load(tiny_bert_dir, max_length=48)
    with torch.no_grad():
        r.cross.classifier.weight.normal_(0, 1.0)
    r.save(out)
    return out


def _random_lists(seed, n_lists=12):
    rng = random.Random(seed)
    queries = _texts(rng, n_lists, 1, 8)
    lists = [_texts(rng, rng.randint(1, 9), 3, 60) for _ in range(n_lists)]  # mixed lengths, some truncated
    return queries, lists


@pytest.mark.parametrize("kind", ANCHORED)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_starts_at_the_first_stage_order(kind, seed, first_stage, first_stage_dir, pretrained_cross_dir):
    """At step 0 every anchored kind scores scale x the first stage's cosine: the same order on every list."""
    model = pretrained_cross_dir if kind == "anchored-cross" and seed == 2 else None  # also with a trained head
    ranker = Ranker.build(kind, first_stage=first_stage_dir, cross_model=model, max_length=64, device="cpu")
    queries, lists = _random_lists(seed)
    with torch.no_grad():
        logits = ranker.list_logits(queries, lists)  # (12, longest)
    for i, (q, texts) in enumerate(zip(queries, lists)):
        cos = first_stage.encode_passages(texts) @ first_stage.encode_queries([q])[0]
        np.testing.assert_allclose(logits[i, : len(texts)].numpy(), 20.0 * cos, atol=1e-4)
        np.testing.assert_allclose(ranker.score(q, texts), 20.0 * cos, atol=1e-4)
        want = np.argsort(-cos, kind="stable")
        assert list(np.argsort(-ranker.score(q, texts), kind="stable")) == list(want)
        assert list(np.argsort(-logits[i, : len(texts)].numpy(), kind="stable")) == list(want)
        assert torch.all(logits[i, len(texts):] == 0)  # right padding


def test_the_cross_kind_does_not_start_at_the_first_stage(first_stage_dir):
    ranker = Ranker.build("cross", first_stage=first_stage_dir, max_length=64, device="cpu")
    assert ranker.bi == "none" and ranker.kind == "cross" and ranker.gate is None


def test_mixed_lengths_equal_per_list_scores_and_listmle(first_stage_dir):
    torch.manual_seed(0)
    ranker = Ranker.build("twin", first_stage=first_stage_dir, device="cpu")
    with torch.no_grad():
        for p in ranker.query_encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))  # not at the start any more
    queries, lists = _random_lists(5, 6)
    logits = ranker.list_logits(queries, lists)
    for i, (q, texts) in enumerate(zip(queries, lists)):
        np.testing.assert_allclose(logits[i, : len(texts)].detach().numpy(), ranker.score(q, texts), atol=1e-4)
    n = logits.shape[1]
    perm = torch.full((len(lists), n), -1)
    for i, texts in enumerate(lists):
        perm[i, : len(texts)] = torch.arange(len(texts)).flip(0)
    mask = torch.arange(n)[None] < torch.tensor([len(t) for t in lists])[:, None]
    loss = listmle(logits, perm, mask)
    loss.backward()
    assert all(p.grad is not None for n, p in ranker.query_encoder.named_parameters()
               if "pooler" not in n)  # (mean pooling leaves BERT's pooler unused)


@pytest.mark.parametrize("kind", list(KINDS))
def test_save_load_restores_exactly(kind, first_stage_dir, pretrained_cross_dir, tmp_path):
    torch.manual_seed(7)
    model = pretrained_cross_dir if kind == "query-tower+cross" else None
    ranker = Ranker.build(kind, first_stage=first_stage_dir, cross_model=model, max_length=64, device="cpu")
    with torch.no_grad():  # as if trained: every trainable part moves
        for p in ranker.parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn_like(p))
    queries, lists = _random_lists(9, 5)
    pairs = [(q, t) for q, texts in zip(queries, lists) for t in texts]
    before = ranker.score_pairs(pairs)
    out = ranker.save(tmp_path / kind)
    meta = json.loads((out / "intdistill_ranker.json").read_text())
    assert meta["format"] == 2 and meta["kind"] == kind and meta["scale"] == 20.0
    again = Ranker.load(out, device="cpu")
    assert again.kind == kind and again.bi == ranker.bi and (again.gate is None) == (ranker.gate is None)
    np.testing.assert_allclose(again.score_pairs(pairs), before, atol=1e-5)
    for (k, a), (k2, b) in zip(ranker.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k


def test_saved_parts_load_in_sentence_transformers(first_stage, first_stage_dir, pretrained_cross_dir, tmp_path):
    from sentence_transformers import CrossEncoder, SentenceTransformer

    q, texts = "insulin dose", ["insulin dose in mouse liver", "bone acid"]
    # query-tower: the root is the trained query encoder; passage_encoder/ is the frozen first stage
    qt = Ranker.build("query-tower", first_stage=first_stage_dir, device="cpu")
    out = qt.save(tmp_path / "qt")
    st_q = SentenceTransformer(str(out), device="cpu").encode([q])
    st_p = SentenceTransformer(str(out / "passage_encoder"), device="cpu").encode(texts)
    np.testing.assert_allclose(20.0 * st_p @ st_q[0], qt.score(q, texts), atol=1e-4)
    # anchored-cross: the root is the cross-encoder (its part, f, alone); anchor/ is the first stage
    ac = Ranker.build("anchored-cross", first_stage=first_stage_dir, cross_model=pretrained_cross_dir, device="cpu")
    with torch.no_grad():
        ac.gate.fill_(0.5)
    out = ac.save(tmp_path / "ac")
    f = CrossEncoder(str(out), device="cpu").predict([(q, t) for t in texts])
    anchor = SentenceTransformer(str(out / "anchor"), device="cpu")
    cos = anchor.encode(texts) @ anchor.encode([q])[0]
    np.testing.assert_allclose(20.0 * cos + 0.5 * f, ac.score(q, texts), atol=1e-4)


def test_old_cross_encoder_directories_still_load(tiny_bert_dir, tmp_path):
    torch.manual_seed(1)
    old = Ranker.load(tiny_bert_dir, max_length=32)
    out = old.save(tmp_path / "old")
    meta = json.loads((out / "intdistill_ranker.json").read_text())
    meta = {"format": 1, "base": meta["base"], "max_length": 32}  # what intdistill wrote before the composite
    (out / "intdistill_ranker.json").write_text(json.dumps(meta))
    again = Ranker.load(out)
    assert again.kind == "cross" and again.max_length == 32
    np.testing.assert_allclose(again.score("q", ["a", "b c"]), old.score("q", ["a", "b c"]), atol=1e-6)


def test_training_moves_only_the_trainable_towers(first_stage_dir, tmp_path):
    from intdistill.train.loop import TrainConfig, train
    from intdistill.train.ranker import RankerStage
    from intdistill.train.sources import RankedList

    rng = random.Random(4)
    corpus = {f"d{i}": Passage(f"d{i}", t) for i, t in enumerate(_texts(rng, 30, 3, 20))}
    ids = list(corpus)
    lists = []
    for i in range(16):
        cands = tuple(rng.sample(ids, 6))
        lists.append(RankedList(f"q{i}", corpus[cands[3]].text.split()[0] + " " + WORDS[i], cands,
                                (3, 0, 1, 2, 4, 5), 1))
    ranker = Ranker.build("query-tower", first_stage=first_stage_dir, device="cpu")
    frozen = {k: v.clone() for k, v in ranker.passage_encoder.state_dict().items()}
    start = {k: v.clone() for k, v in ranker.query_encoder.state_dict().items()}
    stage = RankerStage(ranker, lists, corpus, progress=False)
    ranker.eval()
    with torch.no_grad():
        before = float(stage.loss(stage.examples()))
    ranker.train()
    assert ranker.query_encoder.training and not ranker.passage_encoder.training  # frozen: no dropout
    train(stage, TrainConfig(out=str(tmp_path / "out"), epochs=4, lr=5e-3, batch_size=4, warmup_ratio=0.0,
                             progress=False))
    ranker.eval()
    with torch.no_grad():
        after = float(stage.loss(stage.examples()))
    assert after < before
    for k, v in ranker.passage_encoder.state_dict().items():
        assert torch.equal(v, frozen[k]), k
    assert any(not torch.equal(v, start[k]) for k, v in ranker.query_encoder.state_dict().items())
    # top-k: a list that learns only its first place ignores the order of the rest
    r = lists[0]
    scrambled = RankedList(r.qid, r.query, r.cands, (3, 5, 4, 2, 1, 0), 1)
    s1, s2 = RankerStage(ranker, [r], corpus), RankerStage(ranker, [scrambled], corpus)
    with torch.no_grad():
        assert float(s1.loss([r.qid])) == pytest.approx(float(s2.loss([r.qid])), abs=1e-6)


def test_build_errors(first_stage_dir, pretrained_cross_dir):
    with pytest.raises(ValueError, match="ranker kind: expected one of query-tower, twin"):
        Ranker.build("oracle", first_stage=first_stage_dir)
    with pytest.raises(ValueError, match="kind 'query-tower' has no cross-encoder part; use one of anchored-cross"):
        Ranker.build("query-tower", first_stage=first_stage_dir, cross_model=pretrained_cross_dir)
    with pytest.raises(ValueError, match="scale: expected a positive finite number"):
        Ranker.build("twin", first_stage=first_stage_dir, scale=0.0)
    qt = Ranker.build("query-tower", first_stage=first_stage_dir)
    with pytest.raises(ValueError, match="has no cross-encoder part"):
        qt.tokenize(["q"], ["p"])
    with pytest.raises(ValueError, match=r"expected embeddings of shape \(1, 32\)"):
        qt.prime_passages(["p"], np.zeros((1, 8), dtype=np.float32))
    with pytest.raises(ValueError, match="trains its passage encoder"):
        Ranker.build("twin", first_stage=first_stage_dir).prime_passages(["p"], np.zeros((1, 32)))


def test_new_parameters_get_the_head_lr(first_stage_dir, pretrained_cross_dir):
    from intdistill.train.loop import param_groups

    ac = Ranker.build("anchored-cross", first_stage=first_stage_dir, cross_model=pretrained_cross_dir)
    head_names = {"cross.classifier.weight", "cross.classifier.bias"}
    assert ac.new_parameter_names() == head_names | {"gate"}  # the task head, as before, and the gate
    fresh = Ranker.build("anchored-cross", first_stage=first_stage_dir)
    assert fresh.gate is None and fresh.new_parameter_names() == head_names
    assert torch.count_nonzero(fresh.cross.classifier.weight) == 0  # the new head starts at zero
    assert Ranker.build("query-tower", first_stage=first_stage_dir).new_parameter_names() == set()
    groups = param_groups(ac, 0.01, lr=1e-5, head_lr=1e-2)
    head = [g for g in groups if g["lr"] == 1e-2]
    assert {id(p) for g in head for p in g["params"]} == {id(ac.gate), id(ac.cross.classifier.weight),
                                                          id(ac.cross.classifier.bias)}
    trainable = {id(p) for g in groups for p in g["params"]}
    assert not any(id(p) in trainable for p in ac.query_encoder.parameters())  # the anchor is frozen
