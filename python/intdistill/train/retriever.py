"""Stage 2: distil the frozen ranker into the bi-encoder retriever (KL over mined candidates).

For each training query ``q`` (no labels needed: any query text works), the CURRENT retriever mines its
top-``n`` passages ``c_1..c_n`` by exact search over the whole corpus; the loss is

    KL( softmax(t / τ_t) ‖ softmax(s / τ_s) ),   s_i = e(q) · e(c_i),   t_i = ranker(q, c_i)

with ``e`` the retriever's embedding (normalised for MiniLM, so ``s`` is a cosine) and ``t`` the frozen
ranker's logits (:func:`intdistill.losses.kl_distill`). Candidates are re-mined with the retriever as it
is every ``refresh`` epochs (epochs 1, 1 + refresh, ...). Teacher scores are cached per (qid, docid), in
memory and optionally in SQLite, so re-mining only scores pairs the teacher has not seen. Passages shared
by several queries of a batch are encoded once.

Dev evaluation (optional, every epoch): retrieval over the whole corpus with the current retriever, scored
with qrels measures (``nDCG@10``, ``R@100``) or answer measures (``Acc@20``, ``Acc@100``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from intdistill.data import DataError, Passage, Query
from intdistill.losses import kl_distill
from intdistill.train.loop import Stage, TrainConfig, TrainResult, forward_chunk_size, forward_in_chunks, train

logger = logging.getLogger(__name__)



def module_fingerprint(module: torch.nn.Module, *extra) -> str:
    """SHA-256 over ``extra`` (JSON) and every tensor of ``module.state_dict()`` (names and bytes)."""
    h = hashlib.sha256(json.dumps([str(e) for e in extra]).encode())
    for key, tensor in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def teacher_key(teacher) -> str:
    """Names a teacher for its score cache and for resuming: its tensors, its pair length and, when it has one,
    its lexical term (weight and BM25 statistics), which lives outside ``state_dict``."""
    extra = [teacher.max_length]
    lexical = getattr(teacher, "lexical", None)
    if lexical is not None:
        stats = hashlib.sha256(json.dumps(lexical.to_json(), sort_keys=True).encode()).hexdigest()
        extra += [f"lexical={teacher.lexical_weight!r}", stats]
    return module_fingerprint(teacher, *extra)


class TeacherCache:
    """Teacher scores per ``(qid, docid)``: a dict, mirrored in SQLite (WAL) when ``path`` is given.

    ``teacher_key`` names the teacher (e.g. :func:`module_fingerprint` of the ranker); a file made with
    another teacher is emptied on open (its scores would be wrong), which is logged.
    """

    def __init__(self, path: str | os.PathLike | None = None, teacher_key: str = ""):
        self.path = Path(path) if path is not None else None
        self.teacher_key = teacher_key
        self._scores: dict[tuple[str, str], float] = {}
        self._db = None
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (qid TEXT NOT NULL, docid TEXT NOT NULL, "
                         "score REAL NOT NULL, PRIMARY KEY (qid, docid)) WITHOUT ROWID")
        row = self._db.execute("SELECT value FROM meta WHERE key = 'teacher'").fetchone()
        if row is not None and row[0] != teacher_key:
            n = self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
            logger.warning("%s: scores of another teacher (%s...), %d dropped", self.path, row[0][:12], n)
            self._db.execute("DELETE FROM scores")
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('teacher', ?)", (teacher_key,))
        self._scores = {(q, d): s for q, d, s in self._db.execute("SELECT qid, docid, score FROM scores")}

    def __len__(self) -> int:
        return len(self._scores)

    def __contains__(self, pair: tuple[str, str]) -> bool:
        return pair in self._scores

    def __getitem__(self, pair: tuple[str, str]) -> float:
        return self._scores[pair]

    def put(self, items: Iterable[tuple[str, str, float]]) -> None:
        items = [(q, d, float(s)) for q, d, s in items]
        self._scores.update({(q, d): s for q, d, s in items})
        if self._db is not None:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?)", items)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


@dataclass(frozen=True)
class RetrievalDev:
    """A dev set for stage 2: queries retrieved for over the whole corpus, judged by ``qrels`` when given,
    else by the ``answers`` of ``queries``."""

    queries: Mapping[str, Query]
    measures: tuple[str, ...]
    qrels: Mapping[str, Mapping[str, int]] | None = None

    @property
    def depth(self) -> int:
        """Passages retrieved per query: the largest cutoff of the measures."""
        from intdistill.metrics import parse_measures

        return max(m.k for m in parse_measures(self.measures))


def retrieval_dev(
    queries: Mapping[str, Query],
    *,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    metric: str | None = None,
    where: str | None = None,
) -> RetrievalDev:
    """Build and check a :class:`RetrievalDev`: with ``qrels``, the queries judged there (each must be in
    ``queries``); otherwise every query, each with answers. ``metric`` (default ``nDCG@10`` with qrels,
    ``Acc@20`` with answers) comes first in the measures."""
    from intdistill.metrics import default_measures, parse_measure

    if qrels is not None:
        unknown = [q for q in qrels if q not in queries]
        if unknown:
            raise DataError(where, None, f"{len(unknown)} dev qrels queries are not in the dev queries, "
                                         f"e.g. {unknown[0]!r}")
        kept = {q: queries[q] for q in qrels}
        defaults = default_measures("retriever-dev", qrels=True)
    else:
        missing = [q for q, v in queries.items() if not v.answers]
        if missing:
            raise DataError(where, None, f"dev query {missing[0]!r} has no answer strings "
                                         f"({len(missing)} in all): expected 'answers' or dev qrels")
        kept = dict(queries)
        defaults = default_measures("retriever-dev", qrels=False)
    if not kept:
        raise DataError(where, None, "expected at least one dev query, got none")
    metric = parse_measure(metric).name if metric else defaults[0]
    if qrels is None and not metric.startswith("Acc@"):
        raise DataError(None, None, f"metric: without dev qrels only Acc@k can be computed, got {metric!r}")
    return RetrievalDev(kept, tuple(dict.fromkeys((metric, *defaults))), qrels)


class RetrieverStage(Stage):
    """Stage 2 for :func:`intdistill.train.loop.train`: KL distillation of ``teacher`` into ``retriever``.

    Args:
        retriever: the student (:class:`~intdistill.models.Retriever`), trained.
        teacher: the ranker (:class:`~intdistill.models.Ranker`), frozen.
        queries: training queries (``qid -> Query``; only the text is used).
        corpus: the passages searched; text = ``title + " " + text`` for student and teacher alike.
        n_candidates: passages per query mined by exact search (<= corpus size).
        refresh: re-mine every ``refresh`` epochs (epochs 1, 1 + refresh, ...).
        tau_student, tau_teacher: softmax temperatures of the student's dot products and the teacher's logits.
        cache: teacher score cache (default: in memory only).
        dev: optional :class:`RetrievalDev`.
        batch_size: texts per pass when mining, scoring with the teacher and evaluating (no gradient).
        forward_chunk: texts per forward pass in training (length-sorted chunks); None = by device.
        train_max_length: tokens per text in the training passes (None = the retriever's own ``max_length``);
            mining and evaluation always use the retriever's own, so a shorter value only makes steps cheaper.
        cache_dir: passage embeddings of the *starting* weights are read from / kept in this directory
            (the cache of :func:`intdistill.candidates.encode_corpus`), so the first mining of a corpus that
            ``intdistill candidates --cache-dir`` already encoded costs no corpus pass.
        dropout: the student's dropout in the training passes (default off). Off, a teacher whose scores are
            the student's own (same length, same temperature) gives zero gradient: the machinery alone changes
            nothing. On, the same teacher still moves the student (self-distillation through dropout noise:
            +0.011 SciFact nDCG@10 from a teacher that knows nothing more, README).
    """

    name = "train-retriever"

    def __init__(self, retriever, teacher, queries: Mapping[str, Query], corpus: Mapping[str, Passage], *,
                 n_candidates: int = 20, refresh: int = 1, tau_student: float = 0.05, tau_teacher: float = 1.0,
                 cache: TeacherCache | None = None, dev: RetrievalDev | None = None, batch_size: int = 64,
                 forward_chunk: int | None = None, progress: bool = True, train_max_length: int | None = None,
                 cache_dir: str | os.PathLike | None = None, ray: str | None = None, dropout: bool = False):
        if not isinstance(dropout, bool):
            raise ValueError(f"dropout: expected True or False, got {dropout!r}")
        if getattr(retriever.tokenizer, "padding_side", "right") != "right":
            raise ValueError("expected a tokenizer that pads on the right, "
                             f"got padding_side={retriever.tokenizer.padding_side!r}")
        if not corpus:
            raise DataError(None, None, "expected a non-empty corpus")
        for name, v, low in (("n_candidates", n_candidates, 2), ("refresh", refresh, 1), ("batch_size", batch_size, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
        if train_max_length is not None and (isinstance(train_max_length, bool) or not isinstance(train_max_length, int)
                                             or train_max_length < 3):
            raise ValueError(f"train_max_length: expected an int >= 3, got {train_max_length!r}")
        if n_candidates > len(corpus):
            raise DataError(None, None, f"n_candidates: expected at most the corpus size {len(corpus)}, "
                                        f"got {n_candidates}")
        for name, v in (("tau_student", tau_student), ("tau_teacher", tau_teacher)):
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf")):
                raise ValueError(f"{name}: expected a positive finite number, got {v!r}")
        self.model = retriever
        self.teacher = teacher.eval().requires_grad_(False)
        self.queries = {q: v.text for q, v in queries.items()}
        self.corpus = corpus
        self.doc_ids = list(corpus)
        self.n_candidates, self.refresh = n_candidates, refresh
        self.tau_student, self.tau_teacher = float(tau_student), float(tau_teacher)
        if cache is None:
            cache = TeacherCache(teacher_key=teacher_key(teacher))
        self.cache = cache
        self.teacher_key = cache.teacher_key
        self.dev = dev
        self.batch_size = batch_size
        self._forward_chunk = forward_chunk
        self.progress = progress
        self.train_max_length = train_max_length
        self.cache_dir = cache_dir
        self.dropout = dropout  # the loop's training mode (Stage.dropout)
        self.ray = ray  # a Ray address: corpus encodings on Ray workers (intdistill.ray_backend)
        self.cands: dict[str, tuple[str, ...]] | None = None  # qid -> mined candidate ids, best first
        self._version = 0  # bumped by every loss(): the weights may change after it
        self._corpus_emb: tuple[int, np.ndarray] | None = None

    # ------------------------------------------------------------------ Stage
    def examples(self) -> list[str]:
        return list(self.queries)

    @property
    def forward_chunk(self) -> int:
        """Texts per forward pass (length-sorted chunks of a batch); None at construction = by device."""
        return self._forward_chunk or forward_chunk_size(self.model.device)

    def start_epoch(self, epoch: int) -> None:
        if self.cands is None or (epoch - 1) % self.refresh == 0:
            self.mine()

    def loss(self, qids: Sequence[str]) -> torch.Tensor:
        self._version += 1
        lists = [self.cands[q] for q in qids]
        unique = list(dict.fromkeys(d for c in lists for d in c))
        where = {d: i for i, d in enumerate(unique)}
        device = self.model.device
        index = torch.tensor([[where[d] for d in c] for c in lists], device=device)  # (batch, n)
        chunk = self.forward_chunk
        q_batch = self.model.tokenize([self.queries[x] for x in qids], "query", self.train_max_length)
        p_batch = self.model.tokenize([self.corpus[d].full_text() for d in unique], "passage", self.train_max_length)
        q = forward_in_chunks(self.model.embed, q_batch, chunk).float()  # (batch, dim)
        p = forward_in_chunks(self.model.embed, p_batch, chunk).float()  # (unique passages, dim)
        student = torch.einsum("bd,bnd->bn", q, p[index])  # (batch, n)
        teacher = torch.tensor([[self.cache[(x, d)] for d in c] for x, c in zip(qids, lists)],
                               dtype=torch.float32, device=device)  # (batch, n)
        return kl_distill(student, teacher, tau_student=self.tau_student, tau_teacher=self.tau_teacher)

    def evaluate(self) -> dict[str, float]:
        if self.dev is None:
            return {}
        from intdistill.candidates import exact_search
        from intdistill.metrics import evaluate

        qids = list(self.dev.queries)
        emb = self.corpus_embeddings()
        q_emb = self.model.encode_queries([self.dev.queries[q].text for q in qids], batch_size=self.batch_size,
                                          progress=self.progress)
        ids, scores = exact_search(q_emb, emb, min(self.dev.depth, len(self.doc_ids)), metric="ip")
        run = {q: {self.doc_ids[i]: float(s) for i, s in zip(row, srow)} for q, row, srow in zip(qids, ids, scores)}
        return dict(evaluate(self.dev.qrels, run, self.dev.measures, queries=self.dev.queries,
                             corpus=self.corpus).mean)

    def state(self) -> dict:
        return {"cands": {q: list(c) for q, c in (self.cands or {}).items()}}

    def load_state(self, state: dict) -> None:
        cands = state.get("cands") or {}
        self.cands = {q: tuple(c) for q, c in cands.items()} if cands else None
        if self.cands is not None:
            self._score_teacher()  # a cache in memory only is empty again after a restart

    def fingerprint(self) -> str:
        h = hashlib.sha256(json.dumps([self.model.name, self.n_candidates, self.refresh, self.tau_student,
                                       self.tau_teacher, self.teacher_key, self.train_max_length,
                                       "dropout" if self.dropout else "no-dropout"]).encode())
        h.update(json.dumps(self.queries, sort_keys=False).encode())
        for d in self.doc_ids:
            h.update(d.encode() + b"\t" + self.corpus[d].full_text().encode() + b"\n")
        return h.hexdigest()

    # ------------------------------------------------------------------ mining and the teacher
    def _encode_passages(self, texts: list[str]) -> np.ndarray:
        """Passage embeddings by the current weights; under ``torchrun`` each process encodes its share and the
        shares are gathered (:mod:`intdistill.train.distributed`), so no process encodes the whole corpus."""
        if self.ray is not None:  # the current weights go to the workers for each corpus pass
            from intdistill.ray_backend import encoder

            return encoder(self.model, self.ray, batch_size=self.batch_size)(texts)
        from intdistill.train import distributed

        dist = distributed.current()
        part = self.model.encode_passages(list(distributed.shard(texts, dist)), batch_size=self.batch_size,
                                          progress=self.progress and dist.main)
        return distributed.gather_rows(part, dist)

    def corpus_embeddings(self) -> np.ndarray:
        """Passage embeddings ``(n_passages, dim)`` by the current weights (reused until the next loss())."""
        if self._corpus_emb is None or self._corpus_emb[0] != self._version:
            if self._version == 0 and self.cache_dir is not None:
                from intdistill.candidates import encode_corpus

                with torch.autocast(self.model.device.type, enabled=False):  # the cache holds fp32 encodings
                    emb = encode_corpus(self.model, self.corpus, batch_size=self.batch_size,
                                        progress=self.progress, cache_dir=self.cache_dir,
                                        encode=self._encode_passages)
            else:
                emb = self._encode_passages([self.corpus[d].full_text() for d in self.doc_ids])
            self._corpus_emb = (self._version, emb)
        return self._corpus_emb[1]

    def mine(self) -> None:
        """Top-``n_candidates`` passages of every training query by the current retriever, then teacher
        scores for the pairs not yet cached."""
        from intdistill.candidates import exact_search

        qids = list(self.queries)
        emb = self.corpus_embeddings()
        q_emb = self.model.encode_queries([self.queries[q] for q in qids], batch_size=self.batch_size,
                                          progress=self.progress)
        ids, _ = exact_search(q_emb, emb, self.n_candidates, metric="ip")
        old = self.cands
        self.cands = {q: tuple(self.doc_ids[i] for i in row) for q, row in zip(qids, ids)}
        if old is not None:
            changed = sum(len(set(self.cands[q]) - set(old.get(q, ()))) for q in qids)
            logger.info("re-mined: %d of %d candidates are new", changed, len(qids) * self.n_candidates)
        self._score_teacher()

    def _score_teacher(self) -> None:
        from intdistill.train import distributed

        dist = distributed.current()
        todo = [(q, d) for q, c in self.cands.items() for d in c if (q, d) not in self.cache]
        if dist.active:  # the processes' caches may differ (rank 0's is on disk): score the union, on every rank
            todo = sorted(set(distributed.gather_objects(todo, dist)))
        if not todo:
            return
        self.teacher.to(self.model.device)
        if hasattr(self.teacher, "prime_corpus"):  # a frozen passage tower: the first stage's cached encoding
            self.teacher.prime_corpus(self.corpus, (d for _, d in todo), cache_dir=self.cache_dir,
                                      batch_size=self.batch_size, progress=self.progress)
        mine = list(distributed.shard(todo, dist))  # under torchrun: each process scores its share
        pairs = [(self.queries[q], self.corpus[d].full_text()) for q, d in mine]
        scores = self.teacher.score_pairs(pairs, batch_size=self.batch_size, progress=self.progress and dist.main)
        self.cache.put(distributed.gather_objects([(q, d, s) for (q, d), s in zip(mine, scores.tolist())], dist))


def train_retriever(
    teacher,
    queries: Mapping[str, Query],
    corpus: Mapping[str, Passage],
    cfg: TrainConfig,
    *,
    retriever: str | None = None,
    n_candidates: int = 20,
    refresh: int = 1,
    tau_student: float = 0.05,
    tau_teacher: float = 1.0,
    cache_path: str | os.PathLike | None = None,
    dev: RetrievalDev | None = None,
    train_max_length: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    ray: str | None = None,
    dropout: bool = False,
) -> TrainResult:
    """Stage 2 end to end: load the student (``retriever``: a checkpoint path or hub name; None = the
    bundled all-MiniLM-L6-v2), distil ``teacher`` (a :class:`~intdistill.models.Ranker`) into it over
    ``queries`` and write it to ``cfg.out``. ``cache_path``: SQLite file for teacher scores (default
    ``<out>/teacher_scores.sqlite``); ``train_max_length``, ``cache_dir`` and ``dropout``: see
    :class:`RetrieverStage`."""
    from intdistill.models import Retriever
    from intdistill.train.loop import resolve_device, seed_everything

    seed_everything(cfg.seed)
    student = Retriever.load(retriever, device=resolve_device(cfg.device))
    key = teacher_key(teacher)
    # under torchrun, rank 0 alone keeps the SQLite file; the others hold the (gathered) scores in memory
    main = int(os.environ.get("RANK", "0") or 0) == 0
    cache = TeacherCache((cache_path or Path(cfg.out) / "teacher_scores.sqlite") if main else None, teacher_key=key)
    try:
        stage = RetrieverStage(student, teacher, queries, corpus, n_candidates=n_candidates, refresh=refresh,
                               tau_student=tau_student, tau_teacher=tau_teacher, cache=cache, dev=dev,
                               progress=cfg.progress, train_max_length=train_max_length, cache_dir=cache_dir,
                               ray=ray, dropout=dropout)
        return train(stage, cfg)
    finally:
        cache.close()
