"""Bi-encoder retriever: one shared HF encoder for queries and passages.

``embed(x) = normalize?( pool( encoder(prefix + text).last_hidden_state ) )``, shape ``(batch, dim)``, with
``pool`` = masked mean over tokens (``"mean"``) or the first token (``"cls"``); the relevance score of a
(query, passage) pair is the inner product of their embeddings (cosine when ``normalize``).

Configuration precedence at load: explicit arguments > ``intdistill_retriever.json`` (written by
:meth:`Retriever.save`) > the sentence-transformers files of the checkpoint (``modules.json``,
``1_Pooling/config.json``, ``sentence_bert_config.json``, the ``prompts`` of
``config_sentence_transformers.json``) > defaults (mean pooling, normalize, no prefixes, 256 tokens).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from intdistill.models import common

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "cls")
META_FILE = "intdistill_retriever.json"
DEFAULT_MAX_LENGTH = 256

# sentence-transformers module types we can reproduce; matched on the class name (its module path moved
# between versions: ``sentence_transformers.models.Pooling`` ... ``sentence_transformer.modules.pooling.Pooling``).
_ST_MODULES = ("Transformer", "Pooling", "Normalize")
# legacy ``pooling_mode_*`` flags -> pooling name (sentence-transformers < 6 writes these)
_ST_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


@dataclass(frozen=True)
class RetrieverConfig:
    pooling: str  # "mean" (masked mean over tokens) or "cls" (first token)
    normalize: bool  # L2-normalise embeddings (scores are then cosines)
    query_prefix: str  # prepended to every query text before tokenisation
    passage_prefix: str  # prepended to every passage text
    max_length: int  # tokens per text, special tokens included; longer texts are truncated
    lowercase: bool = False  # lowercase texts first (sentence-transformers ``do_lower_case``)


@dataclass(frozen=True)
class _STLayout:
    """What a sentence-transformers directory says (``None`` where it says nothing)."""

    model_subdir: str = ""
    pooling: str | None = None
    normalize: bool | None = None
    max_length: int | None = None
    lowercase: bool | None = None
    query_prefix: str | None = None
    passage_prefix: str | None = None


def _read_st_layout(src: str) -> _STLayout:
    modules = common.read_json(src, "modules.json")
    if modules is None:
        return _STLayout()
    where = f"{src}/modules.json"
    if not isinstance(modules, list):
        raise ValueError(f"{where}: expected a JSON list of modules, got {type(modules).__name__}")
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    unknown = [k for k in kinds if k not in _ST_MODULES]
    if unknown or kinds.count("Transformer") != 1 or kinds[0] != "Transformer":
        raise ValueError(
            f"{where}: expected a Transformer module followed by Pooling/Normalize, got {kinds}; "
            f"modules {unknown or kinds} cannot be reproduced by intdistill's Retriever"
        )
    paths = {k: str(m.get("path", "")) for k, m in zip(kinds, modules)}
    pooling = None
    if "Pooling" in paths:
        pool_file = f"{paths['Pooling']}/config.json" if paths["Pooling"] else "config.json"
        cfg = common.read_json(src, pool_file) or {}
        if "pooling_mode" in cfg:
            pooling = cfg["pooling_mode"]
        else:
            on = [name for key, name in _ST_LEGACY_POOLING.items() if cfg.get(key)]
            if len(on) != 1:
                raise ValueError(f"{src}/{pool_file}: expected exactly one pooling mode switched on, got {on}")
            pooling = on[0]
        if pooling not in POOLINGS:
            raise ValueError(f"{src}/{pool_file}: pooling {pooling!r} is not supported; expected one of {POOLINGS}")
        if cfg.get("include_prompt", True) is False:
            raise ValueError(
                f"{src}/{pool_file}: include_prompt=false (prompt tokens left out of pooling) is not supported"
            )
    sbert = common.read_json(src, os.path.join(paths["Transformer"], "sentence_bert_config.json")) or {}
    st_cfg = common.read_json(src, "config_sentence_transformers.json") or {}
    prompts = st_cfg.get("prompts") or {}
    passage_prompt = next((prompts[k] for k in ("document", "passage", "corpus") if k in prompts), None)
    max_len = sbert.get("max_seq_length")
    return _STLayout(
        model_subdir=paths["Transformer"],
        pooling=pooling,
        normalize="Normalize" in paths,
        max_length=int(max_len) if max_len is not None else None,
        lowercase=bool(sbert["do_lower_case"]) if "do_lower_case" in sbert else None,
        query_prefix=prompts.get("query"),
        passage_prefix=passage_prompt,
    )


class Retriever(torch.nn.Module):
    """A bi-encoder over any HF encoder. ``forward`` is :meth:`embed` (differentiable, for training)."""

    def __init__(self, model, tokenizer, config: RetrieverConfig, *, name: str = ""):
        super().__init__()
        if config.pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {config.pooling!r}")
        if isinstance(config.max_length, bool) or not isinstance(config.max_length, int) or config.max_length < 2:
            raise ValueError(f"max_length: expected an int >= 2, got {config.max_length!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        tokenizer.model_max_length = config.max_length

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike | None = None,
        *,
        pooling: str | None = None,
        normalize: bool | None = None,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        max_length: int | None = None,
        device: str | torch.device | None = None,
    ) -> "Retriever":
        """Load an encoder checkpoint (``None``: the bundled all-MiniLM-L6-v2; a local path; a hub name).

        Options left as ``None`` come from the checkpoint's intdistill or sentence-transformers files, else
        default to ``pooling="mean"``, ``normalize=True``, empty prefixes, ``max_length=256``.
        """
        from transformers import AutoModel, AutoTokenizer

        src, name = common.resolve_model(name_or_path)
        st = _read_st_layout(src)
        meta = common.read_json(src, META_FILE) or {}
        config = RetrieverConfig(
            pooling=common.first(pooling, meta.get("pooling"), st.pooling, "mean"),
            normalize=bool(common.first(normalize, meta.get("normalize"), st.normalize, True)),
            query_prefix=common.first(query_prefix, meta.get("query_prefix"), st.query_prefix, ""),
            passage_prefix=common.first(passage_prefix, meta.get("passage_prefix"), st.passage_prefix, ""),
            max_length=common.first(max_length, meta.get("max_length"), st.max_length, DEFAULT_MAX_LENGTH),
            lowercase=bool(common.first(meta.get("lowercase"), st.lowercase, False)),
        )
        # older sentence-transformers directories keep the HF model in a subfolder (e.g. 0_Transformer)
        sub = {"subfolder": st.model_subdir} if st.model_subdir else {}
        tokenizer = AutoTokenizer.from_pretrained(src, **sub)
        model = AutoModel.from_pretrained(src, **sub)
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and config.max_length > limit:
            raise ValueError(f"max_length: expected at most {limit} (the model's positions), got {config.max_length}")
        retriever = cls(model, tokenizer, config, name=name)
        retriever.to(common.resolve_device(device))
        retriever.eval()
        logger.info("retriever %s: %s on %s", name, config, retriever.device)
        return retriever

    def save(self, path: str | os.PathLike) -> Path:
        """Write a directory that loads with ``transformers.AutoModel`` (+ ``AutoTokenizer``), with
        ``sentence_transformers.SentenceTransformer`` (same pooling, normalisation, length and prefixes as
        prompts ``query`` / ``document``) and with :meth:`Retriever.load` (which also reads
        ``intdistill_retriever.json``). Returns the directory."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        cfg = self.config
        modules = [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]
        if cfg.normalize:
            modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
            (out / "2_Normalize").mkdir(exist_ok=True)
        common.write_json(out / "modules.json", modules)
        # legacy pooling keys: read by every sentence-transformers version since 2.x
        pool = {"word_embedding_dimension": self.dim}
        pool.update({key: name == cfg.pooling for key, name in _ST_LEGACY_POOLING.items()})
        pool["include_prompt"] = True
        common.write_json(out / "1_Pooling" / "config.json", pool)
        common.write_json(out / "sentence_bert_config.json", {"max_seq_length": cfg.max_length, "do_lower_case": cfg.lowercase})
        common.write_json(
            out / "config_sentence_transformers.json",
            {
                "prompts": {"query": cfg.query_prefix, "document": cfg.passage_prefix},
                "default_prompt_name": None,
                "similarity_fn_name": "cosine" if cfg.normalize else "dot",
            },
        )
        common.write_json(out / META_FILE, {"format": 1, "base": self.name, **asdict(cfg)})
        return out

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def normalize(self) -> bool:
        return self.config.normalize

    def fingerprint(self) -> str:
        """SHA-256 over the configuration, the tokenizer's vocabulary size and every weight: equal
        fingerprints give equal embeddings (used as a cache key)."""
        h = hashlib.sha256()
        h.update(json.dumps(asdict(self.config), sort_keys=True).encode())
        h.update(f"{type(self.model).__name__}|{len(self.tokenizer)}".encode())
        for key, tensor in sorted(self.model.state_dict().items()):
            h.update(key.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    # ------------------------------------------------------------------ differentiable path
    def _prepare(self, texts: Sequence[str], kind: str) -> list[str]:
        if kind == "query":
            prefix = self.config.query_prefix
        elif kind == "passage":
            prefix = self.config.passage_prefix
        else:
            raise ValueError(f"kind: expected 'query' or 'passage', got {kind!r}")
        texts = [prefix + t for t in common.check_texts(texts, f"{kind} texts")]
        return [t.lower() for t in texts] if self.config.lowercase else texts

    def tokenize(self, texts: Sequence[str], kind: str = "query", max_length: int | None = None
                 ) -> Mapping[str, torch.Tensor]:
        """Prefix, truncate to ``max_length`` (default: the configured one; a larger value is capped at it)
        and pad ``texts``: a ``BatchEncoding`` of tensors on our device."""
        limit = self.config.max_length if max_length is None else min(max_length, self.config.max_length)
        enc = self.tokenizer(
            self._prepare(texts, kind), truncation=True, max_length=limit, padding=True, return_tensors="pt",
        )
        return enc.to(self.device)

    def embed(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Embeddings ``(batch, dim)`` of a tokenised batch (from :meth:`tokenize`); keeps the graph."""
        hidden = self.model(**batch).last_hidden_state  # (batch, tokens, dim)
        if self.config.pooling == "cls":
            emb = hidden[:, 0]
        else:
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.config.normalize:
            emb = torch.nn.functional.normalize(emb, p=2, dim=-1)
        return emb

    forward = embed

    # ------------------------------------------------------------------ inference
    def _encode(self, texts, kind: str, batch_size: int, progress: bool) -> np.ndarray:
        prepared = self._prepare(texts, kind)
        if not prepared:
            return np.empty((0, self.dim), dtype=np.float32)

        def tokenize_chunk(start: int, stop: int):
            return self.tokenizer(
                prepared[start:stop], truncation=True, max_length=self.config.max_length, padding=False,
                return_token_type_ids=False,
            )

        return common.run_sorted(
            self, len(prepared), tokenize_chunk, self.embed,
            batch_size=batch_size, progress=progress, desc="encode queries" if kind == "query" else "encode passages",
        )

    def encode_queries(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Query embeddings, float32 ``(len(texts), dim)``, in input order (no gradient)."""
        return self._encode(texts, "query", batch_size, progress)

    def encode_passages(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Passage embeddings, float32 ``(len(texts), dim)``, in input order (no gradient)."""
        return self._encode(texts, "passage", batch_size, progress)
