"""The stage-1 ranker: a composite that starts where the first stage is.

``score(q, p) = scale · cos(E_q(q), E_p(p)) + g · f(q, p)``

- ``cos(E_q, E_p)``: a bi-encoder part built from the FIRST STAGE's own checkpoint (a
  :class:`~intdistill.models.Retriever`). What is trained is set by ``bi``:

  ==========  ============================================================================================
  ``bi``      towers
  ==========  ============================================================================================
  ``query``   ``E_q`` a trainable copy of the first stage, ``E_p`` the frozen first stage (passage
              embeddings are computed once and cached, so a training step encodes only queries)
  ``shared``  one trainable copy for both sides (a "twin" of the first stage)
  ``frozen``  both the frozen first stage: an anchor that never moves
  ``none``    no bi-encoder part
  ==========  ============================================================================================

- ``f``: an optional cross-encoder (``AutoModelForSequenceClassification``, one logit) over
  ``[CLS] q [SEP] p [SEP]``. Built from a checkpoint without a head, its new head starts at ZERO when there
  is a bi-encoder part (so ``f ≡ 0`` at step 0); a pretrained cross-encoder (``--model``) keeps its head and
  enters through a learned gate ``g`` that starts at 0. Without a bi-encoder part, ``f`` alone is the
  ranker (the paper's cross-encoder; a new head is drawn at random) and ``g = 1``.

- ``w · bm25(q, p) / max_q``: an optional lexical term (``lexical_weight`` ``w`` > 0; :mod:`intdistill.lexical`),
  BM25 fitted on the corpus and normalised into ``[0, 1)`` per query. It is fixed: training learns the rest
  around it. Exact word matches are what a small bi-encoder blurs, so the sum starts as a hybrid of the first
  stage and BM25, which the ranker check judges like any ranker.

At step 0 every kind but ``cross`` scores ``scale · cos_first_stage`` (plus the lexical term when it is on):
without the lexical term its order on any candidate list is the first stage's, so training can only add what
the labels teach. :data:`KINDS` names the combinations that were measured (README, "Which ranker").

Saved layout (:meth:`Ranker.save`), a plain directory:

- ``intdistill_ranker.json``: format 2, the kind, ``bi``, ``cross``, ``scale``, ``gate``, lengths, the lexical
  weight (0 or absent: none). ``intdistill_lexical.json``: the BM25 statistics when the weight is positive.
- The root holds the part that other libraries can load: the cross-encoder ``f`` when there is one
  (``AutoModelForSequenceClassification``, ``sentence_transformers.CrossEncoder``), else the encoder
  ``E_q`` (``AutoModel``, ``sentence_transformers.SentenceTransformer``).
- With a cross-encoder at the root, ``E_q`` is in ``query_encoder/`` (``anchor/`` when it is the frozen
  first stage). ``passage_encoder/``: the frozen ``E_p`` of ``bi = query``. All are sentence-transformers
  directories; the sum, ``scale``, ``g`` and the lexical term are intdistill's only.

A directory without ``intdistill_ranker.json`` or with format 1 is a plain cross-encoder (kind ``cross``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from intdistill.lexical import FILE as LEXICAL_FILE, BM25, check_weight
from intdistill.models import common

logger = logging.getLogger(__name__)

META_FILE = "intdistill_ranker.json"
DEFAULT_MAX_LENGTH = 256
from intdistill.models.kinds import BI_MODES, DEFAULT_KIND, DEFAULT_SCALE, KINDS, kind_of  # noqa: E402, F401



class Ranker(torch.nn.Module):
    """The composite ranker. ``forward`` is :meth:`list_logits` (differentiable).

    Build a new one to train with :meth:`build`; load a saved one (or any cross-encoder checkpoint) with
    :meth:`load`. Attributes: ``query_encoder`` / ``passage_encoder`` (:class:`Retriever` or None; the same
    object when ``bi`` is ``shared`` or ``frozen``), ``cross`` (a HF sequence classifier or None) with
    ``tokenizer`` and ``max_length`` for its pairs, ``scale`` and ``gate``.
    """

    def __init__(self, *, bi: str = "none", query_encoder=None, passage_encoder=None, cross=None,
                 cross_tokenizer=None, max_length: int = DEFAULT_MAX_LENGTH, scale: float = DEFAULT_SCALE,
                 gate: float | None = None, name: str = "", lexical=None, lexical_weight: float = 0.0):
        super().__init__()
        if bi not in BI_MODES:
            raise ValueError(f"bi: expected one of {BI_MODES}, got {bi!r}")
        if bi != "none" and (query_encoder is None or passage_encoder is None):
            raise ValueError(f"bi={bi!r} needs a query and a passage encoder")
        if bi == "none" and cross is None:
            raise ValueError("a ranker needs a bi-encoder part, a cross-encoder, or both; got neither")
        if cross is not None and int(cross.config.num_labels) != 1:
            raise ValueError(f"expected a model with 1 output label, got {int(cross.config.num_labels)}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 3:
            raise ValueError(f"max_length: expected an int >= 3, got {max_length!r}")
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and 0 < scale < float("inf")):
            raise ValueError(f"scale: expected a positive finite number, got {scale!r}")
        if check_weight(lexical_weight, "lexical_weight") > 0 and lexical is None:
            raise ValueError("lexical_weight > 0 needs the corpus's BM25 statistics (lexical=BM25.fit(texts))")
        self.lexical = lexical if lexical_weight > 0 else None
        self.lexical_weight = float(lexical_weight)
        self.bi = bi
        self.query_encoder = query_encoder if bi != "none" else None
        # a shared/frozen tower is registered once (as query_encoder); a separate frozen passage tower is its own
        self.passage_encoder = passage_encoder if bi == "query" else None
        self.cross = cross
        self.tokenizer = cross_tokenizer if cross is not None else (query_encoder.tokenizer if query_encoder else None)
        if cross is not None:
            cross_tokenizer.model_max_length = max_length
        self.max_length = max_length if cross is not None else int(query_encoder.config.max_length)
        self.scale = float(scale)
        # g: learned (starts at 0) for a pretrained cross-encoder added to a bi-encoder part; else a constant 1
        self.gate = torch.nn.Parameter(torch.tensor(float(gate))) if gate is not None else None
        self.name = name
        for frozen in self._frozen_modules():
            frozen.requires_grad_(False)
        self._passage_cache: dict[str, torch.Tensor] = {}  # frozen E_p: passage text -> embedding (cpu, fp32)

    # ------------------------------------------------------------------ structure
    @property
    def kind(self) -> str:
        return kind_of(self.bi, self.cross is not None)

    def _frozen_modules(self) -> list[torch.nn.Module]:
        if self.bi == "frozen":
            return [self.query_encoder]
        if self.bi == "query":
            return [self.passage_encoder]
        return []

    @property
    def p_encoder(self):
        """The passage side of the bi-encoder part (None without one)."""
        return self.passage_encoder if self.bi == "query" else self.query_encoder

    @property
    def passages_frozen(self) -> bool:
        return self.bi in ("query", "frozen")

    def train(self, mode: bool = True):
        super().train(mode)
        for frozen in self._frozen_modules():  # frozen towers never drop out: they must equal the first stage
            frozen.eval()
        return self

    def new_parameter_names(self) -> set[str]:
        """The cross-encoder's task head and the gate: the parameters the optimizer gives ``head_lr``."""
        from intdistill.train.loop import head_parameter_names

        names = {f"cross.{n}" for n in head_parameter_names(self.cross)} if self.cross is not None else set()
        if self.gate is not None:
            names.add("gate")
        return names

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ building and loading
    @classmethod
    def build(
        cls,
        kind: str = DEFAULT_KIND,
        *,
        first_stage: str | os.PathLike | None = None,
        cross_model: str | os.PathLike | None = None,
        max_length: int | None = None,
        scale: float = DEFAULT_SCALE,
        device: str | torch.device | None = None,
        lexical_weight: float = 0.0,
        lexical_corpus: Iterable[str] | None = None,
    ) -> "Ranker":
        """A new ranker of ``kind`` (:data:`KINDS`) to train.

        ``first_stage``: the first-stage retriever's checkpoint (None: the bundled all-MiniLM-L6-v2), the
        start of the bi-encoder part and, for ``cross`` without ``cross_model``, of the cross-encoder's body.
        ``cross_model``: a cross-encoder checkpoint for ``f`` (a local path or hub name); with a trained
        one-logit head it keeps the head and enters through a gate starting at 0. ``max_length``: tokens per
        (query, passage) pair of the cross-encoder (default 256); the bi-encoder part keeps the first stage's.
        ``lexical_weight`` > 0 adds the lexical term, with BM25 fitted on ``lexical_corpus`` (the corpus's
        texts, title and text as :meth:`Passage.full_text` joins them).
        """
        from intdistill.models.retriever import Retriever

        if kind not in KINDS:
            raise ValueError(f"ranker kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        spec = KINDS[kind]
        if check_weight(lexical_weight, "lexical_weight") and lexical_corpus is None:
            raise ValueError("lexical_weight > 0 needs lexical_corpus: the corpus's texts to fit BM25 on")
        lexical = BM25.fit(lexical_corpus) if lexical_weight else None
        if cross_model is not None and not spec.cross:
            raise ValueError(f"a cross-encoder model was given, but ranker kind {kind!r} has no cross-encoder part; "
                             f"use one of {', '.join(k for k, v in KINDS.items() if v.cross)}")
        dev = common.resolve_device(device)
        q_enc = p_enc = None
        if spec.bi != "none":
            q_enc = Retriever.load(first_stage, device=dev)
            p_enc = Retriever.load(first_stage, device=dev) if spec.bi == "query" else q_enc
        cross = tok = gate = None
        if spec.cross:
            anchored = spec.bi != "none"
            cross, tok, had_head = _load_cross(*common.resolve_model(cross_model if cross_model is not None
                                                                     else first_stage), zero_head=anchored)
            if anchored and had_head:
                gate = 0.0
        name = common.resolve_model(first_stage)[1] if spec.bi != "none" or cross_model is None else \
            common.resolve_model(cross_model)[1]
        ranker = cls(bi=spec.bi, query_encoder=q_enc, passage_encoder=p_enc, cross=cross, cross_tokenizer=tok,
                     max_length=common.first(max_length, DEFAULT_MAX_LENGTH), scale=scale, gate=gate, name=name,
                     lexical=lexical, lexical_weight=lexical_weight or 0.0)
        ranker.to(dev)
        ranker.eval()
        return ranker

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike | None = None,
        *,
        max_length: int | None = None,
        device: str | torch.device | None = None,
    ) -> "Ranker":
        """Load a ranker saved by :meth:`save` (any kind, exactly as saved), or a cross-encoder checkpoint
        (``None``: the bundled all-MiniLM-L6-v2 with a new head; a local path; a hub name) as kind ``cross``.

        A checkpoint without a classification head gets a newly initialised one, which is logged: such a
        ranker must be trained before its scores mean anything. A head with more than one label is refused.
        ``max_length`` (the cross-encoder's pair length) left as ``None`` comes from the saved ranker, else 256.
        """
        from intdistill.models.retriever import Retriever

        src, name = common.resolve_model(name_or_path)
        meta = common.read_json(src, META_FILE) or {}
        fmt = meta.get("format", 1)
        dev = common.resolve_device(device)
        if fmt == 1:
            cross, tok, _ = _load_cross(src, name, zero_head=False)
            ml = common.first(max_length, meta.get("max_length"), DEFAULT_MAX_LENGTH)
            ranker = cls(cross=cross, cross_tokenizer=tok, max_length=_check_positions(cross, ml), name=name)
        elif fmt == 2:
            bi, has_cross = meta.get("bi"), bool(meta.get("cross"))
            if bi not in BI_MODES:
                raise ValueError(f"{src}/{META_FILE}: bi: expected one of {BI_MODES}, got {bi!r}")
            cross = tok = q_enc = p_enc = None
            root = Path(src)
            if has_cross:
                cross, tok, _ = _load_cross(src, name, zero_head=False)
            if bi != "none":
                q_enc = Retriever.load(root / _query_dir(bi, has_cross), device=dev)
                p_enc = Retriever.load(root / "passage_encoder", device=dev) if bi == "query" else q_enc
            ml = common.first(max_length, meta.get("max_length"), DEFAULT_MAX_LENGTH)
            if cross is not None:
                _check_positions(cross, ml)
            weight = check_weight(meta.get("lexical_weight") or 0.0, f"{src}/{META_FILE}: lexical_weight")
            lexical = BM25.load(root) if weight > 0 else None
            ranker = cls(bi=bi, query_encoder=q_enc, passage_encoder=p_enc, cross=cross, cross_tokenizer=tok,
                         max_length=ml, scale=float(meta.get("scale", DEFAULT_SCALE)), gate=meta.get("gate"),
                         name=str(meta.get("base", name)), lexical=lexical, lexical_weight=float(weight))
        else:
            raise ValueError(f"{src}/{META_FILE}: format {fmt!r} is not supported; expected 1 or 2 (upgrade intdistill)")
        ranker.to(dev)
        ranker.eval()
        return ranker

    def save(self, path: str | os.PathLike) -> Path:
        """Write the directory described in the module docstring; :meth:`load` restores it exactly."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        if self.cross is not None:
            # CrossEncoder (sentence-transformers >= 4) reads its activation from config.sentence_transformers
            st = dict(getattr(self.cross.config, "sentence_transformers", None) or {})
            st["activation_fn"] = "torch.nn.modules.linear.Identity"
            self.cross.config.sentence_transformers = st
            self.cross.save_pretrained(out)
            self.tokenizer.save_pretrained(out)
        if self.query_encoder is not None:
            self.query_encoder.save(out / _query_dir(self.bi, self.cross is not None))
        if self.bi == "query":
            self.passage_encoder.save(out / "passage_encoder")
        if self.lexical is not None:
            self.lexical.save(out)
        else:
            (out / LEXICAL_FILE).unlink(missing_ok=True)  # a stale one from an earlier save
        common.write_json(out / META_FILE, {
            "format": 2, "kind": self.kind, "bi": self.bi, "cross": self.cross is not None, "scale": self.scale,
            "gate": float(self.gate.detach()) if self.gate is not None else None, "base": self.name,
            "max_length": self.max_length, "lexical_weight": self.lexical_weight,
        })
        return out

    # ------------------------------------------------------------------ the cross-encoder's pairs (kept API)
    def tokenize(self, queries: Sequence[str], passages: Sequence[str]) -> Mapping[str, torch.Tensor]:
        """Pairs ``(queries[i], passages[i])`` for the cross-encoder, truncated longest-first and padded."""
        self._need_cross()
        queries = common.check_texts(queries, "queries")
        passages = common.check_texts(passages, "passages")
        if len(queries) != len(passages):
            raise ValueError(f"expected as many queries as passages, got {len(queries)} and {len(passages)}")
        enc = self.tokenizer(
            queries, passages, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        return enc.to(self.device)

    def logits(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The cross-encoder's logits ``(batch,)`` of a tokenised batch (from :meth:`tokenize`), times the gate."""
        self._need_cross()
        out = self.cross(**batch).logits[:, 0]
        return out * self.gate if self.gate is not None else out

    def _need_cross(self) -> None:
        if self.cross is None:
            raise ValueError(f"ranker kind {self.kind!r} has no cross-encoder part")

    @property
    def model(self):
        """The cross-encoder (kept for code that used the plain cross-encoder ranker); None without one."""
        return self.cross

    # ------------------------------------------------------------------ the bi-encoder part
    def passage_embeddings(self, texts: Sequence[str], *, batch_size: int = 64, progress: bool = False
                           ) -> torch.Tensor:
        """Frozen ``E_p`` embeddings ``(len(texts), dim)`` on our device, from the cache, encoding the missing
        ones (no gradient)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._passage_cache))
        if missing:
            emb = self.p_encoder.encode_passages(missing, batch_size=batch_size, progress=progress)
            self.prime_passages(missing, emb)
        return torch.stack([self._passage_cache[t] for t in texts]).to(self.device)

    def prime_passages(self, texts: Sequence[str], embeddings: np.ndarray) -> None:
        """Seed the frozen passage cache with embeddings computed elsewhere by the same first-stage model
        (e.g. :func:`intdistill.candidates.encode_corpus`'s cache). Only for frozen passage towers."""
        if not self.passages_frozen:
            raise ValueError(f"ranker kind {self.kind!r} trains its passage encoder: nothing to prime")
        emb = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
        if emb.shape != (len(texts), self.p_encoder.dim):
            raise ValueError(f"expected embeddings of shape ({len(texts)}, {self.p_encoder.dim}), got {tuple(emb.shape)}")
        self._passage_cache.update(zip(texts, emb))

    def prime_corpus(self, corpus: Mapping, needed=None, *, cache_dir: str | os.PathLike | None = None,
                     batch_size: int = 64, progress: bool = False) -> None:
        """Frozen passage tower: embeddings of the passages ``needed`` (ids; None = all of ``corpus``, an
        ``id -> Passage`` mapping). With ``cache_dir``, the whole corpus goes through ``encode_corpus``'s disk
        cache (the first stage's own cache: same model, same vectors, so usually no encoding at all); without,
        only the needed passages are encoded. A no-op for kinds whose passage tower trains."""
        if not self.passages_frozen:
            return
        ids = list(corpus) if needed is None else list(dict.fromkeys(needed))
        texts = [corpus[d].full_text() for d in ids]
        if cache_dir is None:
            self.passage_embeddings(texts, batch_size=batch_size, progress=progress)
            return
        from intdistill.candidates import encode_corpus

        emb = encode_corpus(self.p_encoder, corpus, batch_size=batch_size, progress=progress, cache_dir=cache_dir)
        row = {d: i for i, d in enumerate(corpus)}
        self.prime_passages(texts, emb[[row[d] for d in ids]])

    def _bi_scores(self, queries: Sequence[str], lists: Sequence[Sequence[str]], width: int,
                   passage_max_length: int | None, chunk: int) -> torch.Tensor:
        from intdistill.train.loop import forward_in_chunks

        enc = self.query_encoder
        q_batch = enc.tokenize(list(queries), "query")
        if self.bi == "frozen":
            with torch.no_grad():
                q = forward_in_chunks(enc.embed, q_batch, chunk).float()  # (batch, dim)
        else:
            q = forward_in_chunks(enc.embed, q_batch, chunk).float()  # (batch, dim)
        unique = list(dict.fromkeys(t for texts in lists for t in texts))
        where = {t: i for i, t in enumerate(unique)}
        if self.passages_frozen:
            p = self.passage_embeddings(unique)  # (unique, dim), no graph
        else:
            p_batch = enc.tokenize(unique, "passage", passage_max_length)
            p = forward_in_chunks(enc.embed, p_batch, chunk).float()  # (unique, dim)
        index = torch.tensor([[where[t] for t in texts] + [0] * (width - len(texts)) for texts in lists],
                             device=q.device)  # (batch, width)
        real = torch.arange(width, device=q.device)[None, :] < torch.tensor([len(t) for t in lists],
                                                                         device=q.device)[:, None]  # (batch, width)
        return (self.scale * torch.einsum("bd,bnd->bn", q, p[index])).masked_fill(~real, 0.0)  # (batch, width)

    # ------------------------------------------------------------------ differentiable path
    def list_logits(self, queries: Sequence[str], lists: Sequence[Sequence[str]], *,
                    passage_max_length: int | None = None, chunk: int = 8) -> torch.Tensor:
        """Logits ``(batch, longest list)`` of each query against its passages (right-padded with 0: mask
        them); keeps the graph to every trainable part. ``passage_max_length`` shortens a trainable passage
        tower's inputs (training only); ``chunk``: texts per forward pass."""
        from intdistill.train.loop import forward_in_chunks

        queries = common.check_texts(queries, "queries")
        if len(queries) != len(lists):
            raise ValueError(f"expected one list per query, got {len(queries)} queries and {len(lists)} lists")
        lists = [common.check_texts(texts, "passages") for texts in lists]
        width = max((len(t) for t in lists), default=0)
        out = torch.zeros((len(queries), width), device=self.device)
        if width == 0:
            return out
        if self.bi != "none":
            out = out + self._bi_scores(queries, lists, width, passage_max_length, chunk)
        if self.cross is not None:
            batch = self.tokenize([q for q, texts in zip(queries, lists) for _ in texts],
                                  [t for texts in lists for t in texts])
            flat = forward_in_chunks(self.logits, batch, chunk).float()  # (Σ n_b,)
            rows = torch.repeat_interleave(torch.arange(len(lists)), torch.tensor([len(t) for t in lists]))
            cols = torch.cat([torch.arange(len(t)) for t in lists])
            out = out.index_put((rows.to(out.device), cols.to(out.device)), flat, accumulate=True)
        if self.lexical is not None:  # a constant: no graph
            lexical = torch.from_numpy(self.lexical.padded(queries, lists, width))  # (batch, width)
            out = out + self.lexical_weight * lexical.to(out.device)
        return out

    forward = list_logits

    # ------------------------------------------------------------------ inference
    def score_pairs(
        self, pairs: Sequence[tuple[str, str]], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Logits float32 ``(len(pairs),)`` for ``(query, passage)`` pairs, in input order (no gradient).
        Each distinct query and passage is encoded once by the bi-encoder part."""
        pairs = list(pairs)
        for i, p in enumerate(pairs):
            if not (isinstance(p, (tuple, list)) and len(p) == 2):
                raise TypeError(f"pairs[{i}]: expected a (query, passage) pair, got {type(p).__name__}")
        if not pairs:
            return np.empty((0,), dtype=np.float32)
        queries = common.check_texts([q for q, _ in pairs], "queries")
        passages = common.check_texts([p for _, p in pairs], "passages")
        out = np.zeros(len(pairs), dtype=np.float32)
        if self.bi != "none":
            uq = list(dict.fromkeys(queries))
            q_emb = self.query_encoder.encode_queries(uq, batch_size=batch_size, progress=progress)
            qi = {t: i for i, t in enumerate(uq)}
            if self.passages_frozen:
                with torch.inference_mode():
                    pa = self.passage_embeddings(passages, batch_size=batch_size, progress=progress).cpu().numpy()
            else:
                up = list(dict.fromkeys(passages))
                p_emb = self.query_encoder.encode_passages(up, batch_size=batch_size, progress=progress)
                pi = {t: i for i, t in enumerate(up)}
                pa = p_emb[[pi[p] for p in passages]]
            qa = q_emb[[qi[q] for q in queries]]
            out += (self.scale * np.einsum("nd,nd->n", qa, pa)).astype(np.float32)
        if self.cross is not None:
            def tokenize_chunk(start: int, stop: int):
                return self.tokenizer(queries[start:stop], passages[start:stop], truncation=True,
                                      max_length=self.max_length, padding=False)

            out += common.run_sorted(self, len(pairs), tokenize_chunk, self.logits, batch_size=batch_size,
                                     progress=progress, desc="score")
        if self.lexical is not None:
            out += self.lexical_weight * self.lexical.normalized_pairs(list(zip(queries, passages)))
        return out

    def score(self, query: str, passages: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Logits float32 ``(len(passages),)`` of one query against each passage."""
        if not isinstance(query, str):
            raise TypeError(f"query: expected str, got {type(query).__name__}")
        passages = common.check_texts(passages, "passages")
        return self.score_pairs([(query, p) for p in passages], batch_size=batch_size, progress=progress)


def _query_dir(bi: str, cross: bool) -> str:
    """Where the (query side of the) bi-encoder part is saved: the root without a cross-encoder, else a
    subdirectory (``anchor/`` for the frozen first stage)."""
    if not cross:
        return ""
    return "anchor" if bi == "frozen" else "query_encoder"


def _check_positions(model, max_length: int) -> int:
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and max_length > limit:
        raise ValueError(f"max_length: expected at most {limit} (the model's positions), got {max_length}")
    return max_length


def _load_cross(src: str, name: str, *, zero_head: bool):
    """``(model, tokenizer, had_head)``: a one-logit sequence classifier from checkpoint ``src`` (shown as
    ``name``). A head new to the checkpoint is logged, and set to zero when ``zero_head`` (so ``f ≡ 0`` until
    it learns)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    config = AutoConfig.from_pretrained(src)
    has_head = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
    if has_head and config.num_labels != 1:
        raise ValueError(f"{name}: expected a classification head with 1 output label, got {config.num_labels}")
    tokenizer = AutoTokenizer.from_pretrained(src)
    model, info = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1, output_loading_info=True)
    fresh = sorted(info.get("missing_keys", ()))
    if fresh and zero_head:
        from intdistill.train.loop import head_parameter_names

        head = head_parameter_names(model)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in head:
                    p.zero_()
        logger.info("ranker %s: the cross-encoder's new head starts at zero (%s)", name, ", ".join(fresh))
    elif fresh:
        logger.warning(
            "ranker %s: %d weight(s) newly initialised (not in the checkpoint: %s); "
            "train the ranker before trusting its scores", name, len(fresh), ", ".join(fresh),
        )
    return model, tokenizer, not fresh
