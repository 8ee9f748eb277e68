"""Cross-encoder ranker: ``score(q, p) = logit( encoder([CLS] q [SEP] p [SEP]) )``, one relevance logit.

Built on ``AutoModelForSequenceClassification`` with ``num_labels=1``. Scores are raw logits (no sigmoid):
ListMLE and the KL distillation both take softmaxes of them. Pairs longer than ``max_length`` tokens are
truncated longest-first, as ``sentence_transformers.CrossEncoder`` does, so both give the same scores.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from intdistill.models import common

logger = logging.getLogger(__name__)

META_FILE = "intdistill_ranker.json"
DEFAULT_MAX_LENGTH = 256


class Ranker(torch.nn.Module):
    """A cross-encoder with one relevance logit. ``forward`` is :meth:`logits` (differentiable)."""

    def __init__(self, model, tokenizer, *, max_length: int = DEFAULT_MAX_LENGTH, name: str = ""):
        super().__init__()
        n_labels = int(model.config.num_labels)
        if n_labels != 1:
            raise ValueError(f"expected a model with 1 output label, got {n_labels}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 3:
            raise ValueError(f"max_length: expected an int >= 3, got {max_length!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.name = name
        tokenizer.model_max_length = max_length

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike | None = None,
        *,
        max_length: int | None = None,
        device: str | torch.device | None = None,
    ) -> "Ranker":
        """Load a cross-encoder (``None``: start from the bundled all-MiniLM-L6-v2; a local path; a hub name).

        A checkpoint without a classification head (a plain encoder, like the default) gets a newly
        initialised one, which is logged: such a ranker must be trained before its scores mean anything.
        A checkpoint whose head has more than one label is refused. ``max_length`` left as ``None`` comes
        from ``intdistill_ranker.json`` when there is one, else 256.
        """
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        src, name = common.resolve_model(name_or_path)
        meta = common.read_json(src, META_FILE) or {}
        config = AutoConfig.from_pretrained(src)
        has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        if has_head and config.num_labels != 1:
            raise ValueError(f"{name}: expected a classification head with 1 output label, got {config.num_labels}")
        tokenizer = AutoTokenizer.from_pretrained(src)
        model, info = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, output_loading_info=True)
        fresh = sorted(info.get("missing_keys", ()))
        if fresh:
            logger.warning(
                "ranker %s: %d weight(s) newly initialised (not in the checkpoint: %s); "
                "train the ranker before trusting its scores", name, len(fresh), ", ".join(fresh),
            )
        max_length = common.first(max_length, meta.get("max_length"), DEFAULT_MAX_LENGTH)
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and max_length > limit:
            raise ValueError(f"max_length: expected at most {limit} (the model's positions), got {max_length}")
        ranker = cls(model, tokenizer, max_length=max_length, name=name)
        ranker.to(common.resolve_device(device))
        ranker.eval()
        return ranker

    def save(self, path: str | os.PathLike) -> Path:
        """Write a directory that loads with ``AutoModelForSequenceClassification`` and with
        ``sentence_transformers.CrossEncoder`` (identity activation, so its ``predict`` gives our logits,
        and the same ``max_length``). Returns the directory."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        # CrossEncoder (sentence-transformers >= 4) reads its activation from config.sentence_transformers
        st = dict(getattr(self.model.config, "sentence_transformers", None) or {})
        st["activation_fn"] = "torch.nn.modules.linear.Identity"
        self.model.config.sentence_transformers = st
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        common.write_json(out / META_FILE, {"format": 1, "base": self.name, "max_length": self.max_length})
        return out

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ differentiable path
    def tokenize(self, queries: Sequence[str], passages: Sequence[str]) -> Mapping[str, torch.Tensor]:
        """Pairs ``(queries[i], passages[i])``, truncated longest-first to ``max_length`` and padded."""
        queries = common.check_texts(queries, "queries")
        passages = common.check_texts(passages, "passages")
        if len(queries) != len(passages):
            raise ValueError(f"expected as many queries as passages, got {len(queries)} and {len(passages)}")
        enc = self.tokenizer(
            queries, passages, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        return enc.to(self.device)

    def logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Relevance logits ``(batch,)`` of a tokenised batch (from :meth:`tokenize`); keeps the graph."""
        return self.model(**batch).logits[:, 0]

    forward = logits

    # ------------------------------------------------------------------ inference
    def score_pairs(
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Logits float32 ``(len(pairs),)`` for ``(query, passage)`` pairs, in input order (no gradient)."""
        pairs = list(pairs)
        for i, p in enumerate(pairs):
            if not (isinstance(p, (tuple, list)) and len(p) == 2):
                raise TypeError(f"pairs[{i}]: expected a (query, passage) pair, got {type(p).__name__}")
        if not pairs:
            return np.empty((0,), dtype=np.float32)
        queries = common.check_texts([q for q, _ in pairs], "queries")
        passages = common.check_texts([p for _, p in pairs], "passages")

        def tokenize_chunk(start: int, stop: int):
            return self.tokenizer(
                queries[start:stop], passages[start:stop], truncation=True, max_length=self.max_length, padding=False
            )

        return common.run_sorted(
            self, len(pairs), tokenize_chunk, self.logits, batch_size=batch_size, progress=progress, desc="score"
        )

    def score(self, query: str, passages: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Logits float32 ``(len(passages),)`` of one query against each passage."""
        if not isinstance(query, str):
            raise TypeError(f"query: expected str, got {type(query).__name__}")
        passages = common.check_texts(passages, "passages")
        return self.score_pairs([(query, p) for p in passages], batch_size=batch_size, progress=progress)
