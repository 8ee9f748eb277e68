"""Retriever (bi-encoder) and Ranker (cross-encoder): encoding against direct HF computation, length-sorted
batching, save/load round trips through transformers and sentence-transformers, and the real MiniLM against
sentence-transformers' own encoding."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from intdistill.models import Ranker, Retriever

TEXTS = [
    "a",
    "Short text.",
    "A considerably longer text about retrieval, distillation and the ranking of passages by large models.",
    "Medium length sentence here.",
    "",
    "Another quite long one: the bi-encoder embeds queries and passages separately, the cross-encoder jointly.",
    "x y z",
]


def _reference_embeddings(model_dir, texts, *, pooling="mean", normalize=True, max_length=256):
    """Direct computation with transformers, one text at a time (no padding at all)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    rows = []
    with torch.no_grad():
        for t in texts:
            enc = tok([t], truncation=True, max_length=max_length, return_tensors="pt")
            h = model(**enc).last_hidden_state[0].numpy()  # (tokens, dim)
            e = h[0] if pooling == "cls" else h.mean(0)
            rows.append(e / np.linalg.norm(e) if normalize else e)
    return np.stack(rows)


def _cos_rows(a, b):
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ---------------------------------------------------------------------------------------------- Retriever


@pytest.fixture(scope="module")
def tiny_retriever(tiny_bert_dir):
    return Retriever.load(tiny_bert_dir, device="cpu")


def test_retriever_defaults_for_plain_hf_dir(tiny_retriever, tiny_bert_dir):
    cfg = tiny_retriever.config
    assert (cfg.pooling, cfg.normalize, cfg.query_prefix, cfg.passage_prefix, cfg.max_length) == ("mean", True, "", "", 256)
    assert tiny_retriever.name == str(tiny_bert_dir)
    assert tiny_retriever.dim == 32
    assert tiny_retriever.device == torch.device("cpu")


@pytest.mark.parametrize("pooling,normalize", [("mean", True), ("cls", False), ("mean", False)])
def test_encode_matches_direct_transformers(tiny_bert_dir, pooling, normalize):
    r = Retriever.load(tiny_bert_dir, pooling=pooling, normalize=normalize, device="cpu")
    got = r.encode_passages(TEXTS, batch_size=3)
    want = _reference_embeddings(tiny_bert_dir, TEXTS, pooling=pooling, normalize=normalize)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    norms = np.linalg.norm(got, axis=1)
    if normalize:
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    else:
        assert np.abs(norms - 1.0).max() > 0.1


def test_length_sorting_restores_input_order(tiny_retriever):
    one_by_one = np.stack([tiny_retriever.encode_passages([t], batch_size=1)[0] for t in TEXTS])
    for bs in (1, 2, 4, 64):
        np.testing.assert_allclose(tiny_retriever.encode_passages(TEXTS, batch_size=bs), one_by_one, atol=1e-5)
    # a permuted input gives the permuted output
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    np.testing.assert_allclose(tiny_retriever.encode_passages([TEXTS[i] for i in perm], batch_size=2),
                               one_by_one[perm], atol=1e-5)


def test_embed_agrees_with_encode_and_is_differentiable(tiny_retriever):
    batch = tiny_retriever.tokenize(TEXTS[:4], kind="passage")
    emb = tiny_retriever.embed(batch)
    assert emb.shape == (4, 32) and emb.requires_grad
    np.testing.assert_allclose(emb.detach().numpy(), tiny_retriever.encode_passages(TEXTS[:4]), atol=1e-5)
    emb.sum().backward()
    grads = [p.grad for p in tiny_retriever.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    tiny_retriever.zero_grad(set_to_none=True)


def test_encode_uses_eval_mode_and_restores_training_mode(tiny_retriever):
    ref = tiny_retriever.encode_queries(TEXTS)
    tiny_retriever.train()
    try:
        again = tiny_retriever.encode_queries(TEXTS)  # dropout must be off while encoding
        assert tiny_retriever.training
    finally:
        tiny_retriever.eval()
    np.testing.assert_allclose(again, ref, atol=1e-6)


def test_prefixes_are_prepended(tiny_bert_dir):
    r = Retriever.load(tiny_bert_dir, query_prefix="query: ", passage_prefix="passage: ", device="cpu")
    q = r.encode_queries(["what is x"])
    p = r.encode_passages(["what is x"])
    plain = Retriever.load(tiny_bert_dir, device="cpu")
    np.testing.assert_allclose(q, plain.encode_passages(["query: what is x"]), atol=1e-6)
    np.testing.assert_allclose(p, plain.encode_passages(["passage: what is x"]), atol=1e-6)
    assert not np.allclose(q, p, atol=1e-3)


def test_truncation_to_max_length(tiny_bert_dir):
    r = Retriever.load(tiny_bert_dir, max_length=8, device="cpu")
    long_text = " ".join(["word"] * 50)
    got = r.encode_passages([long_text])
    want = _reference_embeddings(tiny_bert_dir, [long_text], max_length=8)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_retriever_input_errors(tiny_retriever, tiny_bert_dir):
    assert tiny_retriever.encode_queries([]).shape == (0, 32)
    with pytest.raises(TypeError, match="single str"):
        tiny_retriever.encode_queries("a query")
    with pytest.raises(TypeError, match=r"texts\[1\]: expected str, got int"):
        tiny_retriever.encode_passages(["a", 3])
    with pytest.raises(ValueError, match="kind: expected 'query' or 'passage', got 'doc'"):
        tiny_retriever.tokenize(["a"], kind="doc")
    with pytest.raises(ValueError, match="batch_size: expected an int >= 1, got 0"):
        tiny_retriever.encode_queries(["a"], batch_size=0)
    with pytest.raises(ValueError, match="pooling: expected one of"):
        Retriever.load(tiny_bert_dir, pooling="max", device="cpu")
    with pytest.raises(ValueError, match="max_length: expected at most 512"):
        Retriever.load(tiny_bert_dir, max_length=1000, device="cpu")


@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(pooling="cls", normalize=False, query_prefix="query: ", passage_prefix="passage: ", max_length=16)],
)
def test_retriever_save_loads_with_transformers_and_sentence_transformers(tiny_bert_dir, tmp_path, kwargs):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    r = Retriever.load(tiny_bert_dir, device="cpu", **kwargs)
    out = r.save(tmp_path / "saved")
    cfg = r.config
    long_texts = TEXTS + [" ".join(["token"] * 40)]
    ours_p = r.encode_passages(long_texts)
    ours_q = r.encode_queries(long_texts)

    # transformers: same weights, same pooling by hand
    assert isinstance(AutoModel.from_pretrained(out), torch.nn.Module)
    ref = _reference_embeddings(out, [cfg.passage_prefix + t for t in long_texts], pooling=cfg.pooling,
                                normalize=cfg.normalize, max_length=cfg.max_length)
    np.testing.assert_allclose(ours_p, ref, atol=1e-5)

    # sentence-transformers: its own pooling/normalisation/length/prompts from our files
    st = SentenceTransformer(str(out), device="cpu")
    assert st.max_seq_length == cfg.max_length
    st_p = st.encode(long_texts, prompt=cfg.passage_prefix or None, convert_to_numpy=True)
    st_q = st.encode(long_texts, prompt_name="query", convert_to_numpy=True)
    assert _cos_rows(ours_p, st_p).min() > 0.9999
    assert _cos_rows(ours_q, st_q).min() > 0.9999
    np.testing.assert_allclose(np.linalg.norm(st_p, axis=1), np.linalg.norm(ours_p, axis=1), rtol=1e-4)

    # and back into intdistill with the same configuration
    again = Retriever.load(out, device="cpu")
    assert again.config == cfg
    np.testing.assert_allclose(again.encode_queries(long_texts), ours_q, atol=1e-6)


def test_retriever_reads_sentence_transformers_files_alone(tiny_bert_dir, tmp_path):
    r = Retriever.load(tiny_bert_dir, pooling="cls", normalize=False, query_prefix="q: ", passage_prefix="p: ",
                       max_length=20, device="cpu")
    out = r.save(tmp_path / "st")
    (out / "intdistill_retriever.json").unlink()  # only the sentence-transformers files remain
    again = Retriever.load(out, device="cpu")
    assert again.config == r.config
    # explicit arguments still win
    assert Retriever.load(out, pooling="mean", normalize=True, device="cpu").config.pooling == "mean"


def test_retriever_refuses_sentence_transformers_layouts_it_cannot_reproduce(tiny_bert_dir, tmp_path):
    out = Retriever.load(tiny_bert_dir, device="cpu").save(tmp_path / "st")
    pool_file = out / "1_Pooling" / "config.json"
    cfg = json.loads(pool_file.read_text())
    cfg.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    pool_file.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"pooling 'max' is not supported"):
        Retriever.load(out, device="cpu")
    modules = json.loads((out / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (out / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=r"\['Dense'\] cannot be reproduced"):
        Retriever.load(out, device="cpu")


def test_fingerprint_tracks_weights_and_config(tiny_bert_dir):
    a = Retriever.load(tiny_bert_dir, device="cpu")
    b = Retriever.load(tiny_bert_dir, device="cpu")
    assert a.fingerprint() == b.fingerprint()
    assert Retriever.load(tiny_bert_dir, query_prefix="q: ", device="cpu").fingerprint() != a.fingerprint()
    with torch.no_grad():
        next(b.parameters()).add_(1e-3)
    assert a.fingerprint() != b.fingerprint()


# ---------------------------------------------------------------------------------------------- Ranker

PAIRS = [
    ("what is x", "x is a letter"),
    ("q", "a much longer passage " * 30),
    ("a longer query about the ranking of passages by models", "short"),
    ("", "empty query"),
    ("what is x", "y"),
]


@pytest.fixture(scope="module")
def tiny_ranker(tiny_bert_dir):
    torch.manual_seed(1)  # the new classification head
    return Ranker.load(tiny_bert_dir, max_length=32, device="cpu")


def test_ranker_logs_new_head(tiny_bert_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="intdistill.models.ranker"):
        Ranker.load(tiny_bert_dir, device="cpu")
    assert any("newly initialised" in r.message and "classifier.weight" in r.message for r in caplog.records)


def test_ranker_scores_match_direct_model_and_keep_order(tiny_ranker):
    tok, model = tiny_ranker.tokenizer, tiny_ranker.model
    with torch.no_grad():
        want = np.array([
            model(**tok([q], [p], truncation=True, max_length=32, return_tensors="pt")).logits[0, 0].item()
            for q, p in PAIRS
        ])
    for bs in (1, 2, 64):
        got = tiny_ranker.score_pairs(PAIRS, batch_size=bs)
        assert got.dtype == np.float32 and got.shape == (len(PAIRS),)
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(tiny_ranker.score("what is x", ["x is a letter", "y"]), want[[0, 4]], atol=1e-5)
    assert tiny_ranker.score("q", []).shape == (0,)


def test_ranker_logits_differentiable(tiny_ranker):
    batch = tiny_ranker.tokenize([q for q, _ in PAIRS], [p for _, p in PAIRS])
    logits = tiny_ranker.logits(batch)
    assert logits.shape == (len(PAIRS),) and logits.requires_grad
    np.testing.assert_allclose(logits.detach().numpy(), tiny_ranker.score_pairs(PAIRS), atol=1e-5)
    logits.sum().backward()
    assert tiny_ranker.model.classifier.weight.grad is not None
    tiny_ranker.zero_grad(set_to_none=True)


def test_ranker_input_errors(tiny_ranker):
    with pytest.raises(TypeError, match=r"pairs\[1\]: expected a \(query, passage\) pair"):
        tiny_ranker.score_pairs([("a", "b"), "ab"])
    with pytest.raises(TypeError, match="single str"):
        tiny_ranker.score("q", "one passage")
    with pytest.raises(ValueError, match="expected as many queries as passages, got 2 and 1"):
        tiny_ranker.tokenize(["a", "b"], ["c"])


def test_ranker_refuses_multi_label_head(tiny_bert_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=3)
    model.save_pretrained(tmp_path / "three")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "three" / f).write_bytes((tiny_bert_dir / f).read_bytes())
    with pytest.raises(ValueError, match="expected a classification head with 1 output label, got 3"):
        Ranker.load(tmp_path / "three", device="cpu")


def test_ranker_save_loads_with_transformers_and_cross_encoder(tiny_ranker, tmp_path, caplog):
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    ours = tiny_ranker.score_pairs(PAIRS)
    out = tiny_ranker.save(tmp_path / "ranker")

    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.model_max_length == 32
    with torch.no_grad():
        enc = tok([q for q, _ in PAIRS], [p for _, p in PAIRS], truncation=True, padding=True, return_tensors="pt")
        hf = model(**enc).logits[:, 0].numpy()
    np.testing.assert_allclose(hf, ours, atol=1e-5)

    ce = CrossEncoder(str(out), device="cpu")
    assert ce.max_seq_length == 32
    np.testing.assert_allclose(ce.predict(PAIRS, convert_to_numpy=True), ours, atol=1e-5)  # identity activation

    with caplog.at_level(logging.WARNING, logger="intdistill.models.ranker"):
        again = Ranker.load(out, device="cpu")
    assert not [r for r in caplog.records if "newly initialised" in r.message]
    assert again.max_length == 32
    np.testing.assert_allclose(again.score_pairs(PAIRS), ours, atol=1e-6)


# ---------------------------------------------------------------------------------------------- real MiniLM


def _scifact_passages(shared_data_dir, n):
    texts = []
    with open(shared_data_dir / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            texts.append(f"{rec['title']} {rec['text']}" if rec.get("title") else rec["text"])
            if len(texts) == n:
                break
    return texts


@pytest.mark.slow
def test_minilm_default_matches_sentence_transformers(shared_data_dir, minilm_dir):
    from sentence_transformers import SentenceTransformer

    r = Retriever.load(device="cpu")
    assert r.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert (r.config.pooling, r.config.normalize, r.config.max_length) == ("mean", True, 256)
    texts = _scifact_passages(shared_data_dir, 20)
    ours = r.encode_passages(texts, batch_size=8)
    st_model = SentenceTransformer(str(minilm_dir), device="cpu")
    st = st_model.encode(texts, batch_size=8, convert_to_numpy=True)
    assert ours.shape == (20, 384)
    assert _cos_rows(ours, st).min() > 0.9999
    queries = ["0-dimensional biomaterials lack inductive properties.", "What causes scurvy?"]
    st_q = st_model.encode(queries, convert_to_numpy=True)
    assert _cos_rows(r.encode_queries(queries), st_q).min() > 0.9999


def test_retriever_loads_old_sentence_transformers_layout_with_subfolder(tiny_bert_dir, tmp_path):
    """sentence-transformers 1.x kept the HF model in ``0_Transformer/``."""
    root = tmp_path / "old-st"
    sub = root / "0_Transformer"
    sub.mkdir(parents=True)
    for f in tiny_bert_dir.iterdir():
        (sub / f.name).write_bytes(f.read_bytes())
    (sub / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24, "do_lower_case": False}))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    (root / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    r = Retriever.load(root, device="cpu")
    assert (r.config.pooling, r.config.normalize, r.config.max_length) == ("cls", False, 24)
    want = _reference_embeddings(tiny_bert_dir, TEXTS, pooling="cls", normalize=False, max_length=24)
    np.testing.assert_allclose(r.encode_passages(TEXTS), want, atol=1e-5)


def test_missing_model_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model directory .*no-such-model' not found"):
        Retriever.load(tmp_path / "no-such-model", device="cpu")
    with pytest.raises(FileNotFoundError, match="not found"):
        Ranker.load(str(tmp_path / "no-such-model"), device="cpu")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        Retriever.load(tmp_path / "file", device="cpu")
