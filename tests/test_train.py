"""Training: label sources (hand cases), the shared loop (config, checkpoints, resume after SIGKILL, best
epoch), stage 1 and stage 2 losses going down on a learnable toy set, the teacher score cache, and both
CLI commands end to end. Everything runs the tiny random BERT on CPU."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import intdistill
import torch

from intdistill import cli
from intdistill.data import DataError, Passage, Query
from intdistill.losses import kl_distill, listmle
from intdistill.train import loop
from intdistill.train.loop import TrainConfig, latest_checkpoint, train
from intdistill.train.sources import (
    RankedList,
    build_lists,
    first_stage_permutation,
    gold_first_permutation,
    random_permutation,
)

# where the intdistill under test lives (the source tree in development, site-packages once installed):
# child processes must import that same one, built extension included
PYTHON_DIR = Path(intdistill.__file__).resolve().parents[1]
TOPICS = ["apple", "river", "engine", "violin", "glacier", "pepper", "castle", "comet",
          "tiger", "bridge", "coffee", "desert", "forest", "guitar", "island", "marble"]
N_CANDS = 5


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is several times faster than two
    contending ones. Restored afterwards for the other test modules."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------- toy data


def _toy(root: Path) -> dict:
    """A learnable toy set: query "what about <t>" is answered by doc d-<t> (a sentence about <t>); its candidate
    list holds d-<t> at a seeded random position among 4 filler docs (remarks on the weather, never relevant).
    Train on 12 topics, dev on 4."""
    rng = random.Random(7)
    corpus = {f"d-{t}": Passage(f"d-{t}", f"the {t} is here: notes on {t} and {t} history", title=t) for t in TOPICS}
    fillers = [f"f-{i}" for i in range(12)]
    corpus.update({f: Passage(f, f"a remark number {i} on the weather, the wind and the rain") for i, f in
                   enumerate(fillers)})
    train_t, dev_t = TOPICS[:12], TOPICS[12:]

    def lists_for(topics):
        out = {}
        for t in topics:
            cands = rng.sample(fillers, N_CANDS - 1)
            cands.insert(rng.randrange(N_CANDS), f"d-{t}")
            out[f"q-{t}"] = cands
        return out

    train_lists, dev_lists = lists_for(train_t), lists_for(dev_t)
    root.mkdir(parents=True, exist_ok=True)
    p = {k: root / f"{k}" for k in ("corpus.jsonl", "queries.jsonl", "qrels.tsv", "labels.jsonl",
                                     "cands.jsonl", "dev_cands.jsonl", "dev_qrels.tsv", "extra.jsonl")}
    p["corpus.jsonl"].write_text("".join(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n"
                                         for d in corpus.values()))
    p["queries.jsonl"].write_text("".join(json.dumps({"_id": f"q-{t}", "text": f"what about {t}",
                                                       "answers": [t]}) + "\n" for t in TOPICS))
    p["qrels.tsv"].write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q-{t}\td-{t}\t1\n" for t in train_t))
    p["dev_qrels.tsv"].write_text("".join(f"q-{t}\t0\td-{t}\t1\n" for t in dev_t))
    # "LLM" labels: the relevant doc first, the rest in first-stage order reversed (so they differ from gold-first)
    with open(p["labels.jsonl"], "w") as f:
        for q, cands in train_lists.items():
            gold = cands.index(f"d-{q[2:]}")
            perm = [gold] + [i for i in reversed(range(N_CANDS)) if i != gold]
            f.write(json.dumps({"qid": q, "cands": cands, "permutation": perm, "outputs": [], "model": "toy",
                                "template": "toy", "prompt_hash": ""}) + "\n")
    for name, lists in (("cands.jsonl", train_lists), ("dev_cands.jsonl", dev_lists)):
        with open(p[name], "w") as f:
            for q, cands in lists.items():
                f.write(json.dumps({"qid": q, "cands": cands, "scores": [1.0 - 0.1 * i for i in range(N_CANDS)],
                                    "retriever": "toy", "query": f"what about {q[2:]}"}) + "\n")
    p["extra.jsonl"].write_text("".join(json.dumps({"_id": f"x-{t}", "text": f"{t} facts"}) + "\n" for t in train_t[:4]))
    return {"paths": {k.split(".")[0]: str(v) for k, v in p.items()}, "corpus": corpus,
            "train_lists": train_lists, "dev_lists": dev_lists}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return _toy(tmp_path_factory.mktemp("toy"))


def _ranked(toy, source="gold-first"):
    lists, _ = build_lists(source, toy["train_lists"], toy["corpus"],
                           {q: f"what about {q[2:]}" for q in toy["train_lists"]},
                           qrels={q: {f"d-{q[2:]}": 1} for q in toy["train_lists"]})
    return lists


def _cfg(out, **kw):
    base = dict(epochs=2, lr=2e-2, batch_size=4, warmup_ratio=0.0, weight_decay=0.0, progress=False)
    base.update(kw)
    return TrainConfig(out=str(out), **base)


# ------------------------------------------------------------------------------------------- sources


def test_permutation_hand_cases():
    assert gold_first_permutation([False, False, True, False, True]) == (2, 4, 0, 1, 3)
    assert gold_first_permutation([True, False, False]) == (0, 1, 2)
    assert gold_first_permutation([False, False, False]) == (0, 1, 2)  # no gold: first-stage order
    assert gold_first_permutation([False, True, True]) == (1, 2, 0)
    assert first_stage_permutation(4) == (0, 1, 2, 3)
    p = random_permutation(8, 0, "q1")
    assert sorted(p) == list(range(8))
    assert p == random_permutation(8, 0, "q1")  # seeded by (seed, qid)
    assert p != random_permutation(8, 1, "q1") or p != random_permutation(8, 2, "q1")
    # stable across processes and Python versions: random.Random with a str seed hashes it with SHA-512
    assert random_permutation(5, 0, "q1") == tuple(_shuffled(5, "0:q1"))


def _shuffled(n, seed):
    x = list(range(n))
    random.Random(seed).shuffle(x)
    return x


def test_build_lists_sources():
    corpus = {d: Passage(d, f"text of {d}" + (" paris" if d in ("b", "d") else "")) for d in "abcdef"}
    lists = {"q1": ["a", "b", "c", "d"], "q2": ["e", "f", "a"]}
    texts = {"q1": "one", "q2": "two"}
    qrels = {"q1": {"d": 1, "b": 2, "c": 0}, "q2": {"z": 1}}
    # top "all" (the paper's plain ListMLE): every list, every place
    got, rep = build_lists("gold-first", lists, corpus, texts, qrels=qrels, top="all")
    assert [r.permutation for r in got] == [(1, 3, 0, 2), (0, 1, 2)]
    assert (rep.n_lists, rep.n_candidates, rep.n_without_relevant, rep.judged_by) == (2, 7, 1, "qrels")
    assert got[0] == RankedList("q1", "one", ("a", "b", "c", "d"), (1, 3, 0, 2))
    assert "learns all places" in rep.line() and "kept in first-stage order" in rep.line()
    # top "auto" (the default): a gold-first list learns its relevant places; q2 has none, so it is left out
    got, rep = build_lists("gold-first", lists, corpus, texts, qrels=qrels)
    assert got == [RankedList("q1", "one", ("a", "b", "c", "d"), (1, 3, 0, 2), 2)]
    assert (rep.n_lists, rep.n_candidates, rep.n_without_relevant, rep.n_left_out) == (1, 4, 1, 1)
    assert "1 lists without a relevant candidate left out" in rep.line()
    # answers: candidates whose text contains an answer string
    queries = {"q1": Query("q1", "one", ("Paris",)), "q2": Query("q2", "two", ("nowhere",))}
    got, rep = build_lists("gold-first", lists, corpus, texts, queries=queries, top="all")
    assert [r.permutation for r in got] == [(1, 3, 0, 2), (0, 1, 2)] and rep.judged_by == "answers"
    got, _ = build_lists("first-stage", lists, corpus, texts)
    assert [r.permutation for r in got] == [(0, 1, 2, 3), (0, 1, 2)]
    assert [r.top for r in got] == [None, None]  # auto: every place of the other sources
    got, _ = build_lists("first-stage", lists, corpus, texts, top="1")
    assert [r.top for r in got] == [1, 1]
    with pytest.raises(DataError, match="listmle top: expected 'auto', 'all' or an int >= 1, got 0"):
        build_lists("first-stage", lists, corpus, texts, top=0)
    with pytest.raises(DataError, match="none of the 1 lists has a relevant candidate"):
        build_lists("gold-first", {"q2": lists["q2"]}, corpus, texts, qrels=qrels)
    got, _ = build_lists("llm", lists, corpus, texts, permutations={"q1": [3, 2, 1, 0], "q2": [2, 0, 1]})
    assert [r.permutation for r in got] == [(3, 2, 1, 0), (2, 0, 1)]
    # random: per-(seed, qid), so a query's shuffle does not depend on the other queries or max_queries
    full, _ = build_lists("random", lists, corpus, texts, seed=3)
    only_q1, _ = build_lists("random", lists, corpus, texts, seed=3, max_queries=1)
    assert [r.qid for r in only_q1] == ["q1"] and only_q1[0] == full[0]
    assert full[0].permutation == random_permutation(4, 3, "q1")
    reordered, _ = build_lists("random", {"q2": lists["q2"], "q1": lists["q1"]}, corpus, texts, seed=3)
    assert {r.qid: r.permutation for r in reordered} == {r.qid: r.permutation for r in full}


def test_build_lists_bad_inputs():
    corpus = {d: Passage(d, d) for d in "abc"}
    lists, texts = {"q1": ["a", "b"]}, {"q1": "one"}
    with pytest.raises(DataError, match=r"'llm' needs LLM labels \(--labels"):
        build_lists("llm", lists, corpus, texts)
    with pytest.raises(DataError, match="gold-first' needs judgements"):
        build_lists("gold-first", lists, corpus, texts)
    with pytest.raises(DataError, match=r"1 of 1 queries have no judgements in the qrels, e\.g\. 'q1'"):
        build_lists("gold-first", lists, corpus, texts, qrels={"other": {"a": 1}})
    with pytest.raises(DataError, match="have no answer strings"):
        build_lists("gold-first", lists, corpus, texts, queries={"q1": Query("q1", "one")})
    with pytest.raises(DataError, match=r"labels\.jsonl: query 'q1' names 1 candidate\(s\) not in the corpus, e\.g\. 'zz'"):
        build_lists("first-stage", {"q1": ["a", "zz"]}, corpus, texts, where="labels.jsonl")
    with pytest.raises(DataError, match="query 'q1' has no query text"):
        build_lists("first-stage", lists, corpus, {})
    with pytest.raises(DataError, match="expected a permutation of 0..1"):
        build_lists("llm", lists, corpus, texts, permutations={"q1": [0, 0]})
    with pytest.raises(DataError, match="label source: expected one of llm, gold-first, source-first, first-stage, random"):
        build_lists("oracle", lists, corpus, texts)


# ------------------------------------------------------------------------------------------- the loop


def test_train_config_validation():
    for kw, msg in (({"epochs": 0}, "epochs: expected an int >= 1, got 0"),
                    ({"lr": -1.0}, "lr: expected a positive finite number"),
                    ({"warmup_ratio": 1.5}, r"warmup_ratio: expected a number in \[0, 1\]"),
                    ({"precision": "fp8"}, "precision: expected one of"),
                    ({"batch_size": True}, "batch_size: expected an int"),
                    ({"out": ""}, "out: expected an output directory")):
        with pytest.raises(ValueError, match=msg):
            TrainConfig(**{"out": "x", **kw})
    cpu = torch.device("cpu")
    assert loop.resolve_precision("auto", cpu) is None
    assert loop.resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        loop.resolve_precision("fp16", cpu)
    assert loop.resolve_device("cpu") == cpu
    assert loop.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_latest_checkpoint_skips_incomplete(tmp_path):
    root = tmp_path / "checkpoints"
    for name, complete in (("epoch-1", True), ("epoch-2", True), ("epoch-10", False), (".epoch-3.tmp", True)):
        (root / name).mkdir(parents=True)
        if complete:
            (root / name / loop.STATE_FILE).write_text("{}")
    assert latest_checkpoint(root) == root / "epoch-2"
    assert not (root / ".epoch-3.tmp").exists()  # an interrupted save is cleaned up
    assert latest_checkpoint(tmp_path / "none") is None


# ------------------------------------------------------------------------------------------- stage 1


@pytest.fixture(scope="module")
def tiny_ranker_dir(tiny_bert_dir, tmp_path_factory):
    """A tiny ranker with a seeded classification head, saved (loads without a fresh head)."""
    from intdistill.models import Ranker

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-ranker")
    Ranker.load(tiny_bert_dir, max_length=64).save(out)
    return out


def _mean_ranker_loss(stage, qids):
    stage.model.eval()
    with torch.no_grad():
        return float(stage.loss(qids))


def test_ranker_stage_loss_is_listmle_of_each_list(tiny_ranker_dir, toy):
    """Lists of different lengths in one batch: the padded, masked loss equals the mean of per-list ListMLE."""
    from intdistill.models import Ranker
    from intdistill.train.ranker import RankerStage

    ranker = Ranker.load(tiny_ranker_dir)
    lists = [RankedList("a", "what about apple", ("d-apple", "d-river", "d-comet"), (2, 0, 1)),
             RankedList("b", "what about river", ("d-tiger", "d-river"), (1, 0))]
    stage = RankerStage(ranker, lists, toy["corpus"])
    got = _mean_ranker_loss(stage, ["a", "b"])
    want = []
    for r in lists:
        s = torch.tensor(ranker.score(r.query, [toy["corpus"][d].full_text() for d in r.cands]))
        want.append(float(listmle(s[None], torch.tensor([r.permutation]))))
    assert got == pytest.approx(sum(want) / 2, rel=1e-4, abs=1e-5)
    with pytest.raises(DataError, match="appears twice"):
        RankerStage(ranker, lists + lists[:1], toy["corpus"])


def test_forward_in_chunks_equals_one_pass(tiny_ranker_dir):
    """Length-sorted chunks, each cut to its own longest row: same outputs and gradients as one padded pass."""
    from intdistill.models import Ranker
    from intdistill.train.loop import forward_in_chunks

    ranker = Ranker.load(tiny_ranker_dir).eval()
    passages = ["short", "a much longer passage " * 5, "mid length text here", "x", "another long one " * 3]
    batch = ranker.tokenize(["q"] * 5, passages)
    full = ranker.logits(batch)
    (g_full,) = torch.autograd.grad(full.sum(), ranker.model.classifier.weight)
    for chunk in (1, 2, 3, 5):
        got = forward_in_chunks(ranker.logits, batch, chunk)
        torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)
        (g,) = torch.autograd.grad(got.sum(), ranker.model.classifier.weight)
        torch.testing.assert_close(g, g_full, atol=1e-5, rtol=1e-5)
    seen = []
    forward_in_chunks(lambda b: seen.append(tuple(b["input_ids"].shape)) or b["input_ids"][:, 0].float(), batch, 2)
    widths = batch["attention_mask"].sum(1).sort(descending=True).values.tolist()
    assert seen == [(2, widths[0]), (2, widths[2]), (1, widths[4])]


def test_stage1_training_reduces_loss_and_keeps_best(tiny_ranker_dir, toy, tmp_path):
    from intdistill.models import Ranker
    from intdistill.train.ranker import RankerStage, rerank_dev

    lists = _ranked(toy)
    ranker = Ranker.load(tiny_ranker_dir)
    dev = rerank_dev({q: (f"what about {q[2:]}", c) for q, c in toy["dev_lists"].items()}, toy["corpus"],
                     qrels={q: {f"d-{q[2:]}": 1} for q in toy["dev_lists"]})
    assert dev.measures == ("nDCG@10", "RR@10")
    stage = RankerStage(ranker, lists, toy["corpus"], dev=dev, progress=False)
    qids = stage.examples()
    before = _mean_ranker_loss(stage, qids)
    result = train(stage, _cfg(tmp_path / "out", epochs=4, keep_checkpoints=2))
    out = tmp_path / "out"
    last = RankerStage(Ranker.load(out / "checkpoints" / "epoch-4" / "model"), lists, toy["corpus"])
    after = _mean_ranker_loss(last, qids)
    assert after < 0.8 * before, (before, after)  # log(5!) = 4.79 for an untrained ranker
    assert (result.epochs, result.steps, result.resumed_from) == (4, 12, 0)  # 12 queries / 4 per step, 4 epochs
    hist = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4] and all("nDCG@10" in h["dev"] for h in hist)
    best = max(hist, key=lambda h: h["dev"]["nDCG@10"])  # first of equal maxima wins, as in the loop
    assert result.best_epoch == best["epoch"] and result.best_metric == pytest.approx(best["dev"]["nDCG@10"])
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["epoch-3", "epoch-4"]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["final_model"] == "best" and summary["steps"] == 12
    # the final model in out/ is the best epoch's
    final = Ranker.load(out)
    best_model = Ranker.load(out / "best")
    for (k, a), (_, b) in zip(final.state_dict().items(), best_model.state_dict().items()):
        assert torch.equal(a, b), k


def test_bf16_autocast_path_runs_on_cpu(tiny_ranker_dir, toy, tmp_path):
    from intdistill.models import Ranker
    from intdistill.train.ranker import RankerStage

    stage = RankerStage(Ranker.load(tiny_ranker_dir), _ranked(toy)[:4], toy["corpus"])
    result = train(stage, _cfg(tmp_path / "out", epochs=1, precision="bf16"))
    assert result.steps == 1 and np.isfinite(result.history[0]["train_loss"])


# ------------------------------------------------------------------------------------------- stage 2


@pytest.fixture(scope="module")
def toy_teacher_dir(tiny_ranker_dir, toy, tmp_path_factory):
    """A tiny ranker trained briefly on the toy lists (a teacher with an opinion)."""
    from intdistill.models import Ranker
    from intdistill.train.ranker import RankerStage

    out = tmp_path_factory.mktemp("toy-teacher")
    stage = RankerStage(Ranker.load(tiny_ranker_dir), _ranked(toy), toy["corpus"])
    train(stage, _cfg(out, epochs=3, keep_checkpoints=1))
    return out


def _student_stage(tiny_bert_dir, teacher_dir, toy, **kw):
    from intdistill.models import Ranker, Retriever
    from intdistill.train.retriever import RetrieverStage

    queries = {f"q-{t}": Query(f"q-{t}", f"what about {t}") for t in TOPICS[:12]}
    kw = {"n_candidates": 6, "refresh": 100, "tau_student": 0.05, "progress": False, **kw}
    return RetrieverStage(Retriever.load(tiny_bert_dir, max_length=64), Ranker.load(teacher_dir), queries,
                          toy["corpus"], **kw)


def test_retriever_stage_loss_is_kl_per_query(tiny_bert_dir, toy_teacher_dir, toy):
    """Shared passages are encoded once per batch; the loss still equals the KL of each query's list."""
    stage = _student_stage(tiny_bert_dir, toy_teacher_dir, toy, tau_teacher=0.5)
    stage.start_epoch(1)
    qids = stage.examples()[:5]
    stage.model.eval()
    with torch.no_grad():
        got = float(stage.loss(qids))
        want = []
        for q in qids:
            cands = stage.cands[q]
            qe = stage.model.embed(stage.model.tokenize([stage.queries[q]], "query"))
            pe = stage.model.embed(stage.model.tokenize([toy["corpus"][d].full_text() for d in cands], "passage"))
            teacher = torch.tensor(stage.teacher.score(stage.queries[q], [toy["corpus"][d].full_text() for d in cands]))
            want.append(float(kl_distill(qe @ pe.T, teacher[None], tau_student=0.05, tau_teacher=0.5)))
    assert got == pytest.approx(sum(want) / len(want), rel=1e-4, abs=1e-6)
    # the candidates are the retriever's own exact top-n over the whole corpus
    emb = stage.corpus_embeddings()
    qe = stage.model.encode_queries([stage.queries[qids[0]]])
    top = np.argsort(-(qe @ emb.T)[0], kind="stable")[:6]
    assert list(stage.cands[qids[0]]) == [stage.doc_ids[i] for i in top]


def test_dev_sets_judged_by_answers(tiny_bert_dir, toy_teacher_dir, toy):
    from intdistill.train.ranker import rerank_dev
    from intdistill.train.retriever import retrieval_dev

    queries = {f"q-{t}": Query(f"q-{t}", f"what about {t}", (t,)) for t in TOPICS[12:]}
    dev = retrieval_dev(queries)
    assert dev.measures == ("Acc@20", "Acc@100") and dev.depth == 100
    stage = _student_stage(tiny_bert_dir, toy_teacher_dir, toy, dev=dev)
    got = stage.evaluate()
    assert set(got) == {"Acc@20", "Acc@100"}
    assert got["Acc@100"] == 1.0  # 100 > 28 passages: every answer-bearing passage is retrieved
    rdev = rerank_dev({q: (v.text, toy["dev_lists"][q]) for q, v in queries.items()}, toy["corpus"], queries=queries)
    assert rdev.measures == ("Acc@1", "Acc@5")
    base = rdev.baseline(toy["corpus"])
    first = [toy["dev_lists"][q][0] == f"d-{q[2:]}" for q in queries]
    assert base == {"Acc@1": pytest.approx(sum(first) / 4), "Acc@5": 1.0}
    with pytest.raises(DataError, match="without dev qrels only Acc@k can be computed, got 'nDCG@10'"):
        retrieval_dev(queries, metric="nDCG@10")
    with pytest.raises(DataError, match="has no answer strings"):
        retrieval_dev({"q": Query("q", "no answers")})


def test_stage2_training_reduces_kl(tiny_bert_dir, toy_teacher_dir, toy, tmp_path):
    stage = _student_stage(tiny_bert_dir, toy_teacher_dir, toy, tau_teacher=0.2)
    stage.start_epoch(1)
    qids = stage.examples()

    def kl():
        stage.model.eval()
        with torch.no_grad():
            return float(stage.loss(qids))

    before = kl()
    train(stage, _cfg(tmp_path / "out", epochs=4))
    after = kl()  # refresh=100: same candidates as before training
    assert after < 0.7 * before, (before, after)


def test_stage2_resume_restores_mined_candidates(tiny_bert_dir, toy_teacher_dir, toy, tmp_path):
    """Interrupted in epoch 2 (refresh 2: epoch 2 trains on epoch 1's candidates, kept in the checkpoint), then
    resumed by a fresh stage: the same weights as an uninterrupted run."""
    cfg = dict(epochs=2, keep_checkpoints=1)
    ref = _student_stage(tiny_bert_dir, toy_teacher_dir, toy, refresh=2)
    train(ref, _cfg(tmp_path / "ref", **cfg))

    class Interrupt(Exception):
        pass

    stage = _student_stage(tiny_bert_dir, toy_teacher_dir, toy, refresh=2)
    real, calls = stage.loss, []

    def loss(qids):
        calls.append(1)
        if len(calls) == 4:  # 12 queries, batch 4: the first pass of epoch 2
            raise Interrupt
        return real(qids)

    stage.loss = loss
    with pytest.raises(Interrupt):
        train(stage, _cfg(tmp_path / "run", **cfg))
    fresh = _student_stage(tiny_bert_dir, toy_teacher_dir, toy, refresh=2)
    mined = []
    fresh.mine = lambda: mined.append(1)  # must not be needed: epoch 2 is not a refresh epoch
    result = train(fresh, _cfg(tmp_path / "run", **cfg))
    assert (result.resumed_from, result.steps, mined) == (1, 6, [])
    assert fresh.cands == ref.cands
    for (k, a), (_, b) in zip(fresh.model.state_dict().items(), ref.model.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=k)


def test_teacher_cache_scores_only_new_pairs(tiny_bert_dir, toy_teacher_dir, toy, tmp_path):
    from intdistill.train.retriever import TeacherCache, module_fingerprint
    from intdistill.models import Ranker

    key = module_fingerprint(Ranker.load(toy_teacher_dir), 64)
    cache = TeacherCache(tmp_path / "t.sqlite", teacher_key=key)
    stage = _student_stage(tiny_bert_dir, toy_teacher_dir, toy, cache=cache)
    scored = []
    real = stage.teacher.score_pairs
    stage.teacher.score_pairs = lambda pairs, **kw: scored.append(len(pairs)) or real(pairs, **kw)
    stage.mine()
    stage.mine()  # same weights, same candidates: nothing new to score
    assert scored == [12 * 6] and len(cache) == 72
    cache.close()
    again = TeacherCache(tmp_path / "t.sqlite", teacher_key=key)  # persisted
    assert len(again) == 72
    again.close()
    other = TeacherCache(tmp_path / "t.sqlite", teacher_key="another teacher")  # stale scores dropped
    assert len(other) == 0
    other.close()


def test_head_lr_groups_only_the_new_head(tiny_ranker_dir, tiny_bert_dir):
    from intdistill.models import Ranker, Retriever
    from intdistill.train.loop import head_parameter_names, param_groups

    ranker = Ranker.load(tiny_ranker_dir)
    head = head_parameter_names(ranker)
    assert head and all(".classifier." in n or n.startswith("classifier.") or "classifier" in n for n in head), head
    groups = param_groups(ranker, 0.01, lr=1e-5, head_lr=1e-3)
    by_lr = {}
    for g in groups:
        by_lr.setdefault(g["lr"], []).extend(g["params"])
    n_all = sum(1 for p in ranker.parameters() if p.requires_grad)
    assert sorted(by_lr) == [1e-5, 1e-3] and len(by_lr[1e-3]) == len(head) == 2  # classifier weight and bias
    assert len(by_lr[1e-5]) + len(by_lr[1e-3]) == n_all
    decayed = [g for g in groups if g["lr"] == 1e-3 and g["weight_decay"] > 0]
    assert len(decayed) == 1 and [p.dim() for p in decayed[0]["params"]] == [2]
    assert head_parameter_names(Retriever.load(tiny_bert_dir)) == set()  # a bare encoder has no head
    with pytest.raises(ValueError, match="head_lr: expected a positive finite number or None, got 0"):
        TrainConfig(out="x", head_lr=0)


def test_train_max_length_truncates_training_passes_only(tiny_bert_dir, toy_teacher_dir, toy, tmp_path):
    """--max-length shortens the texts of the training passes; mining keeps the retriever's own length, and
    with cache_dir the first mining reads the passage embeddings ``encode_corpus`` already cached."""
    from intdistill.candidates import encode_corpus

    stage = _student_stage(tiny_bert_dir, toy_teacher_dir, toy, train_max_length=5, cache_dir=tmp_path / "emb")
    cached = encode_corpus(stage.model, toy["corpus"], cache_dir=tmp_path / "emb")
    files = list((tmp_path / "emb").iterdir())
    assert len(files) == 1
    np.save(files[0], cached + 1.0)  # a marker: mining must read these, not re-encode
    assert np.array_equal(stage.corpus_embeddings(), cached + 1.0)
    seen = []
    real = stage.model.tokenize
    stage.model.tokenize = lambda texts, kind="query", max_length=None: seen.append(max_length) or real(texts, kind,
                                                                                                         max_length)
    stage.start_epoch(1)
    stage.loss(stage.examples()[:2])
    assert seen == [5, 5]
    assert real(["a b c d e f g h i j"], "passage", 5)["input_ids"].shape[1] == 5
    assert real(["a b c d e f g h i j"], "passage", 10_000)["input_ids"].shape[1] == 12  # capped at the model's own
    assert stage.fingerprint() != _student_stage(tiny_bert_dir, toy_teacher_dir, toy).fingerprint()
    with pytest.raises(ValueError, match="train_max_length: expected an int >= 3, got 2"):
        _student_stage(tiny_bert_dir, toy_teacher_dir, toy, train_max_length=2)


def test_no_dropout_identity_teacher_teaches_nothing(tiny_bert_dir, toy, tmp_path):
    """The first-stage control in miniature: the teacher is the untrained default ranker (``scale · cos`` of the
    student's own starting weights, the student's temperature). With dropout off and the same length, the KL
    and its gradient are zero to float precision (the default); with dropout on, the same teacher still moves the
    student."""
    from intdistill.models import Ranker

    Ranker.build(first_stage=tiny_bert_dir, device="cpu").save(tmp_path / "identity")

    def loss_and_grad(**kw):
        torch.manual_seed(0)
        stage = _student_stage(tiny_bert_dir, tmp_path / "identity", toy, tau_teacher=1.0, **kw)
        stage.start_epoch(1)
        stage.model.train(stage.dropout)  # what the loop does at the start of every epoch
        stage.model.zero_grad()
        loss = stage.loss(stage.examples())
        loss.backward()
        grad = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in stage.model.parameters() if p.grad is not None))
        return float(loss.detach()), float(grad), stage

    loss, grad, stage = loss_and_grad()  # the default
    assert loss < 1e-6 and grad < 1e-4, (loss, grad)
    assert not stage.model.training  # the training pass ran without dropout
    on_loss, on_grad, on = loss_and_grad(dropout=True)
    assert on_loss > 1e-3 and on_grad > 100 * max(grad, 1e-6), (on_loss, on_grad)
    assert on.fingerprint() != stage.fingerprint()  # a checkpoint of one does not resume the other
    for s in (stage, on):  # the loop itself trains in the stage's mode
        modes, real = [], s.loss
        s.loss = lambda qids, s=s, real=real, modes=modes: modes.append(s.model.training) or real(qids)
        train(s, _cfg(tmp_path / f"out-{s.dropout}", epochs=1, keep_checkpoints=1))
        assert modes and set(modes) == {s.dropout}, (s.dropout, modes)
    with pytest.raises(ValueError, match="dropout: expected True or False, got 'no'"):
        _student_stage(tiny_bert_dir, tmp_path / "identity", toy, dropout="no")


# ------------------------------------------------------------------------------------------- CLI


def _run_cli(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr().err


def _ranker_argv(toy, out, model, *extra):
    p = toy["paths"]
    return ["train-ranker", "--corpus", p["corpus"], "--labels", p["labels"], "--out", str(out),
            "--kind", "cross", "--model", str(model), "--max-length", "64", "--epochs", "3", "--batch-size", "4",
            "--lr", "2e-2", "--no-progress", *extra]


def test_cli_bad_inputs(toy, tmp_path, tiny_ranker_dir, capsys):
    p = toy["paths"]
    base = ["train-ranker", "--corpus", p["corpus"], "--out", str(tmp_path / "o"), "--kind", "cross",
            "--model", str(tiny_ranker_dir)]
    code, err = _run_cli(base + ["--candidates", p["cands"]], capsys)  # default source llm
    assert code == 2 and "--label-source llm needs --labels FILE" in err
    code, err = _run_cli(base + ["--candidates", p["cands"], "--label-source", "gold-first"], capsys)
    assert code == 2 and "gold-first needs --qrels, or --queries with answers" in err
    code, err = _run_cli(base + ["--labels", p["cands"]], capsys)
    assert code == 2 and "got a candidates file: pass it as --candidates" in err
    bad = tmp_path / "bad_labels.jsonl"
    bad.write_text(json.dumps({"qid": "q-apple", "cands": ["d-apple", "d-nope"], "permutation": [1, 0]}) + "\n")
    code, err = _run_cli(base + ["--labels", str(bad), "--queries", p["queries"]], capsys)
    assert code == 2 and "query 'q-apple' names 1 candidate(s) not in the corpus, e.g. 'd-nope'" in err
    code, err = _run_cli(base + ["--labels", p["labels"]], capsys)  # label lines hold no query text
    assert code == 2 and "has no query text (give --queries)" in err
    code, err = _run_cli(base + ["--candidates", p["cands"], "--label-source", "first-stage",
                                 "--dev-qrels", p["dev_qrels"]], capsys)
    assert code == 2 and "need --dev-candidates" in err
    code, err = _run_cli(["train-retriever", "--ranker", str(tiny_ranker_dir), "--queries", p["queries"],
                          "--corpus", p["corpus"], "--out", str(tmp_path / "r"), "--n-candidates", "99"], capsys)
    assert code == 2 and "--n-candidates 99: expected at most the corpus size 28" in err
    assert not (tmp_path / "o").exists()


def test_cli_end_to_end_ranker_then_retriever(toy, tmp_path, tiny_bert_dir, tiny_ranker_dir, capsys):
    from sentence_transformers import CrossEncoder, SentenceTransformer

    p = toy["paths"]
    rout = tmp_path / "ranker"
    code, err = _run_cli(_ranker_argv(toy, rout, tiny_ranker_dir, "--queries", p["queries"], "--max-queries", "8",
                                      "--dev-candidates", p["dev_cands"], "--dev-qrels", p["dev_qrels"]), capsys)
    assert code == 0, err
    assert "label source llm: 8 lists, 40 candidates" in err and "first-stage order: nDCG@10" in err
    assert "ranker trained: 3 epochs, 6 steps; best epoch" in err
    import re as _re

    first = float(_re.search(r"first-stage order: nDCG@10 ([0-9.]+)", err).group(1))
    best = float(_re.search(r"best epoch \d+ \(nDCG@10 ([0-9.]+)\)", err).group(1))
    judged = _re.search(r"dev: the ranker vs the first stage on \d+ lists: nDCG@10 ([0-9.]+) -> ([0-9.]+) "
                        r"\(([-+][0-9.]+), p=([0-9.e-]+)\): (better|worse|no significant difference)", err)
    assert judged, err
    # the judged model is the best epoch's, judged against the first stage's own order
    assert float(judged.group(1)) == pytest.approx(first, abs=1e-4)
    assert float(judged.group(2)) == pytest.approx(best, abs=1e-4)
    # the warning appears exactly when the one significance rule says "worse"
    assert ("re-ranks the dev lists WORSE than their first-stage order" in err) == (judged.group(5) == "worse")
    ce = CrossEncoder(str(rout), device="cpu")
    assert ce.predict([("what about apple", "apple notes")]).shape == (1,)

    sout = tmp_path / "retriever"
    argv = ["train-retriever", "--ranker", str(rout), "--queries", p["queries"], "--qrels", p["qrels"],
            "--extra-queries", p["extra"], "--corpus", p["corpus"], "--out", str(sout), "--retriever", str(tiny_bert_dir),
            "--n-candidates", "4", "--refresh", "2", "--epochs", "2", "--batch-size", "8", "--lr", "2e-2",
            "--dev-qrels", p["dev_qrels"], "--no-progress"]
    code, err = _run_cli(argv, capsys)
    assert code == 0, err
    assert "16 queries x 4 candidates from 28 passages" in err  # 12 judged + 4 extra
    assert "retriever trained: 2 epochs, 4 steps; best epoch" in err
    hist = [json.loads(x) for x in (sout / "metrics.jsonl").read_text().splitlines()]
    assert [sorted(h["dev"]) for h in hist] == [["R@100", "nDCG@10"]] * 2
    st = SentenceTransformer(str(sout), device="cpu")
    assert st.encode(["what about apple"]).shape == (1, 32)
    assert (sout / "teacher_scores.sqlite").is_file() and (sout / "best").is_dir()

    # gold-first from a candidates file, with the training-set-size cut, and a resume refusing changed settings
    gout = tmp_path / "gold"
    argv = ["train-ranker", "--corpus", p["corpus"], "--candidates", p["cands"], "--label-source", "gold-first",
            "--qrels", p["qrels"], "--max-queries", "4", "--out", str(gout), "--kind", "cross",
            "--model", str(tiny_ranker_dir), "--epochs", "1", "--no-progress"]
    code, err = _run_cli(argv, capsys)
    assert code == 0 and "label source gold-first: 4 lists" in err and "0 lists without a relevant" in err
    code, err = _run_cli(argv[:-3] + ["--epochs", "1", "--lr", "5e-4", "--no-progress"], capsys)
    assert code == 2 and "cannot resume with other settings (lr: checkpoint 0.0001, now 0.0005)" in err
    code, err = _run_cli(argv[:-3] + ["--epochs", "1", "--lr", "5e-4", "--no-resume", "--no-progress"], capsys)
    assert code == 0, err


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {python_dir!r})
    from intdistill.train import ranker
    real, calls = ranker.RankerStage.loss, [0]
    def loss(self, qids):
        calls[0] += 1
        if calls[0] == {kill_at}:  # a forward pass inside epoch 2, after the epoch-1 checkpoint
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, qids)
    ranker.RankerStage.loss = loss
    from intdistill.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(toy, tmp_path, tiny_ranker_dir, capsys):
    from intdistill.models import Ranker

    p = toy["paths"]
    extra = ["--queries", p["queries"], "--dev-candidates", p["dev_cands"], "--dev-qrels", p["dev_qrels"]]
    # 12 queries, batch 4: 3 steps per epoch, 3 epochs
    ref = tmp_path / "uninterrupted"
    code, err = _run_cli(_ranker_argv(toy, ref, tiny_ranker_dir, *extra), capsys)
    assert code == 0, err

    out = tmp_path / "killed"
    argv = _ranker_argv(toy, out, tiny_ranker_dir, *extra)
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    script = KILLER.format(python_dir=str(PYTHON_DIR), kill_at=3 + 2)
    killed = subprocess.run([sys.executable, "-c", script, *argv], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert latest_checkpoint(out / "checkpoints") == out / "checkpoints" / "epoch-1"
    assert not (out / "train_summary.json").exists()

    resumed = subprocess.run([sys.executable, "-m", "intdistill", *argv], env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "(epoch 1, step 3)" in resumed.stderr
    summary = json.loads((out / "train_summary.json").read_text())
    assert (summary["epochs"], summary["steps"], summary["resumed_from"]) == (3, 9, 1)
    hist = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    ref_hist = [json.loads(x) for x in (ref / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    for h, r in zip(hist, ref_hist):
        assert h["train_loss"] == pytest.approx(r["train_loss"], rel=1e-4)
        assert h["dev"] == pytest.approx(r["dev"], abs=1e-6)
    a, b = Ranker.load(out), Ranker.load(ref)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4, msg=k)


def test_train_step_holds_the_schedule_when_the_fp16_scaler_skips_a_step():
    """fp16's gradient scaler skips an optimizer step whose gradients overflow (and lowers its scale); the
    learning-rate schedule must not advance for it, or the first steps of an fp16 run eat the warm-up. A real
    ``GradScaler`` (on CPU) meets an infinite gradient, then a finite one."""
    from types import SimpleNamespace

    w = torch.nn.Parameter(torch.ones(2))
    losses = iter([w.sum() * float("inf"), (w * w).sum()])
    stage = SimpleNamespace(model=torch.nn.Module(), loss=lambda batch: next(losses))
    stage.model.w = w
    optimizer = torch.optim.SGD([w], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    step = lambda: loop.train_step(stage, ["q"], optimizer, scheduler, scaler, batch_size=1, max_grad_norm=1.0,  # noqa: E731
                                   device=torch.device("cpu"), amp_dtype=None)
    step()  # overflow: skipped, scale 8 -> 4, schedule held
    assert scaler.get_scale() == 4.0 and scheduler.last_epoch == 0
    assert torch.equal(w.detach(), torch.ones(2))
    step()  # finite: taken, schedule advances
    assert scheduler.last_epoch == 1 and scheduler.get_last_lr() == [0.05]
    # gradient 2w = (2, 2), clipped to norm 1: (1/√2, 1/√2); lr 0.1 (the schedule's value before this step)
    assert torch.allclose(w.detach(), torch.full((2,), 1 - 0.1 / 2 ** 0.5))
    plain = torch.amp.GradScaler("cpu", enabled=False)  # fp32/bf16: no scaler, the schedule always advances
    losses = iter([(w * w).sum()])
    loop.train_step(stage, ["q"], optimizer, scheduler, plain, batch_size=1, max_grad_norm=0.0,
                    device=torch.device("cpu"), amp_dtype=None)
    assert scheduler.last_epoch == 2
