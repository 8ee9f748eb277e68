"""First stage: exact dense search and the per-query candidate lists that the LLM, the ranker and the
retriever distillation all work on.

File format (JSONL, one line per query, in query order)::

    {"qid": "q1", "cands": ["d7", "d3", ...], "scores": [0.81, 0.77, ...], "retriever": "<model name>"}

``cands`` is in first-stage order (best first) and ``scores`` are the first-stage scores of the same docs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from intdistill.data import DataError, Passage, Query, Run

if TYPE_CHECKING:
    from intdistill.models import Retriever

logger = logging.getLogger(__name__)

METRICS = ("cos", "ip")
#: Score-block budget of :func:`exact_search` when ``batch`` is not given (bytes of float32 scores).
BLOCK_BYTES = 64 << 20
_COMPACT = (np.dtype(np.float16), np.dtype(np.int8))
#: Queries per block of :func:`exact_search` by default (the passages are tiled to fit BLOCK_BYTES).
MAX_QUERY_BLOCK = 256


def exact_search(
    query_emb: np.ndarray, passage_emb: np.ndarray, k: int, *, metric: str = "cos", batch: int | None = None,
    passage_block: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` passages per query by inner product (``"ip"``) or cosine (``"cos"``).

    Shapes: ``query_emb (nq, d)``, ``passage_emb (np, d)`` -> ``ids int64 (nq, k)``, ``scores float32 (nq, k)``,
    each row best first; equal scores are ordered by passage index (lower first), also at the k-th place,
    so the result equals a stable full sort by descending score. Computed in float32 tiles of ``batch``
    queries x ``passage_block`` passages (defaults: up to 256 queries, and as many passages as keep one score
    tile within 64 MiB): BLAS matmul, then :func:`intdistill.topk.topk` (Rust, rows in parallel) per tile,
    then a top-k of the tiles' top-k's. Tiling the passages too means a large corpus is read from memory once
    per query block rather than once per handful of queries. Cosine of a zero vector is 0.
    """
    if metric not in METRICS:
        raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}")
    q = np.asarray(query_emb, dtype=np.float32)
    p = np.asarray(passage_emb)
    if p.dtype not in _COMPACT:  # float16 / int8 passages (an index's stored vectors) become float32 per tile
        p = p.astype(np.float32, copy=False)
    if q.ndim != 2 or p.ndim != 2:
        raise ValueError(f"expected 2-D embeddings, got query shape {q.shape} and passage shape {p.shape}")
    if q.shape[1] != p.shape[1]:
        raise ValueError(f"expected equal dimensions, got queries {q.shape[1]} and passages {p.shape[1]}")
    n_pass = p.shape[0]
    if n_pass == 0:
        raise ValueError("passage_emb is empty: expected at least one passage")
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_pass:
        raise ValueError(f"k: expected an int in [1, {n_pass}] (the number of passages), got {k!r}")
    k = int(k)
    for name, value in (("batch", batch), ("passage_block", passage_block)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    if batch is None:
        batch = MAX_QUERY_BLOCK if passage_block is None else max(1, BLOCK_BYTES // (4 * passage_block))
    if passage_block is None:
        passage_block = max(1, BLOCK_BYTES // (4 * batch))
    passage_block = min(passage_block, n_pass)
    for what, arr in (("query_emb", q), ("passage_emb", p)):
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = np.argwhere(~np.isfinite(arr))[0]
            raise ValueError(f"{what}: expected finite values, got {arr[tuple(bad)]} at row {bad[0]}")

    def ready(x: np.ndarray) -> np.ndarray:  # float32, unit rows for cos
        x = x.astype(np.float32, copy=False)
        if metric == "cos":
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))
        return x

    q = ready(q)
    prepared = passage_block >= n_pass or p.dtype == np.float32
    if prepared:  # once (a copy only for cos); compact passages are converted tile by tile instead
        p = ready(p)
    nq = q.shape[0]
    ids = np.empty((nq, k), dtype=np.int64)
    scores = np.empty((nq, k), dtype=np.float32)
    from intdistill.topk import topk

    # Rust top-k (rows in parallel, GIL released): best first, ties broken by the lower column. Tiles are taken
    # in passage order and each keeps its k best in that order, so among equal scores the concatenation lists
    # lower passage indices first, and the final top-k keeps the global tie rule.
    for start in range(0, nq, batch):
        qb = q[start : start + batch]
        if passage_block >= n_pass:
            best = topk(qb @ p.T, k)  # p.T: a transposed view, BLAS reads p's rows (no copy)
            ids[start : start + batch], scores[start : start + batch] = best.idx, best.vals
            continue
        cand_ids, cand_vals = [], []
        for p0 in range(0, n_pass, passage_block):
            block = p[p0 : p0 + passage_block]
            tile = qb @ (block if prepared else ready(block)).T  # (b, pb)
            best = topk(tile, min(k, tile.shape[1]))
            cand_ids.append(best.idx + p0)
            cand_vals.append(best.vals)
        vals = np.concatenate(cand_vals, axis=1)
        best = topk(vals, k)
        ids[start : start + batch] = np.take_along_axis(np.concatenate(cand_ids, axis=1), best.idx, axis=1)
        scores[start : start + batch] = best.vals
    return ids, scores


class CandidateList(NamedTuple):
    """One query's candidates in first-stage order (best first) with their first-stage scores."""

    docids: tuple[str, ...]
    scores: tuple[float, ...]
    query: str = ""  # the query text, kept so that labelling needs no queries file


class Candidates(Mapping):
    """``qid -> CandidateList`` (insertion-ordered), plus the name of the retriever that produced them."""

    def __init__(self, lists: Mapping[str, CandidateList | tuple], retriever: str = ""):
        self.retriever = str(retriever)
        self._lists: dict[str, CandidateList] = {}
        for qid, entry in lists.items():
            docids, scores, *rest = entry
            cl = CandidateList(tuple(docids), tuple(float(s) for s in scores), str(rest[0]) if rest else "")
            if len(cl.docids) != len(cl.scores):
                raise ValueError(f"query {qid!r}: {len(cl.docids)} candidates but {len(cl.scores)} scores")
            if len(set(cl.docids)) != len(cl.docids):
                dup = next(d for i, d in enumerate(cl.docids) if d in cl.docids[:i])
                raise ValueError(f"query {qid!r}: candidate {dup!r} listed twice")
            self._lists[str(qid)] = cl

    def __getitem__(self, qid: str) -> CandidateList:
        return self._lists[qid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._lists)

    def __len__(self) -> int:
        return len(self._lists)

    def __repr__(self) -> str:
        return f"Candidates({len(self)} queries, retriever={self.retriever!r})"

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSONL (one line per query; written to a temporary file, then renamed into place)."""
        from intdistill.journal import atomic_writer

        path = Path(path)
        with atomic_writer(path) as f:
            for qid, cl in self._lists.items():
                line = {"qid": qid, "cands": list(cl.docids), "scores": list(cl.scores), "retriever": self.retriever}
                if cl.query:
                    line["query"] = cl.query
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Candidates":
        """Read the JSONL written by :meth:`save`; raises :class:`DataError` naming the line of any bad record."""
        lists: dict[str, CandidateList] = {}
        retriever: str | None = None
        with open(path, encoding="utf-8") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise DataError(path, lineno, f"expected a JSON object, got invalid JSON ({e.msg})") from e
                if not isinstance(rec, dict):
                    raise DataError(path, lineno, f"expected a JSON object, got {type(rec).__name__}")
                missing = [key for key in ("qid", "cands", "scores") if key not in rec]
                if missing:
                    raise DataError(path, lineno, f"expected keys qid, cands, scores; missing {', '.join(missing)}")
                qid, cands, scores = rec["qid"], rec["cands"], rec["scores"]
                if not isinstance(qid, str):
                    raise DataError(path, lineno, f"qid: expected a string, got {qid!r}")
                if not isinstance(cands, list) or not all(isinstance(d, str) for d in cands):
                    raise DataError(path, lineno, "cands: expected a list of doc id strings")
                if not isinstance(scores, list) or not all(
                    isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in scores
                ):
                    raise DataError(path, lineno, "scores: expected a list of finite numbers")
                if len(cands) != len(scores):
                    raise DataError(path, lineno, f"expected as many scores as cands, got {len(scores)} and {len(cands)}")
                if len(set(cands)) != len(cands):
                    dup = next(d for i, d in enumerate(cands) if d in cands[:i])
                    raise DataError(path, lineno, f"cands: doc id {dup!r} listed twice")
                if qid in lists:
                    raise DataError(path, lineno, f"qid {qid!r} appears twice")
                name = rec.get("retriever", "")
                if not isinstance(name, str):
                    raise DataError(path, lineno, f"retriever: expected a string, got {name!r}")
                if retriever is None:
                    retriever = name
                elif name != retriever:
                    raise DataError(path, lineno, f"retriever: expected {retriever!r} (as on earlier lines), got {name!r}")
                query = rec.get("query", "")
                if not isinstance(query, str):
                    raise DataError(path, lineno, f"query: expected the query text as a string, got {query!r:.60}")
                lists[qid] = CandidateList(tuple(cands), tuple(float(s) for s in scores), query)
        return cls(lists, retriever or "")

    def to_run(self, tag: str | None = None) -> Run:
        """The candidates as a :class:`~intdistill.data.Run`, one entry per candidate with its score.

        Candidate order is the run's order only when scores strictly decrease (as first-stage scores do
        apart from exact ties, which a TREC run breaks by doc id)."""
        run = Run(tag=tag or _run_tag(self.retriever))
        for qid, cl in self._lists.items():
            run[qid] = dict(zip(cl.docids, cl.scores))
        return run


def _run_tag(name: str) -> str:
    """A TREC run tag has no whitespace: the retriever's last path component, or ``intdistill``."""
    tag = "".join(name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].split())
    return tag or "intdistill"


def encode_corpus(
    retriever: "Retriever",
    corpus: Mapping[str, Passage],
    *,
    passage_text: Callable[[Passage], str] = Passage.full_text,
    batch_size: int = 64,
    progress: bool = False,
    cache_dir: str | os.PathLike | None = None,
    encode: Callable[[list[str]], np.ndarray] | None = None,
) -> np.ndarray:
    """Passage embeddings float32 ``(len(corpus), dim)`` in corpus order.

    With ``cache_dir``, embeddings are kept as ``passages-<key>.npy`` (``allow_pickle=False``) where ``key``
    hashes the retriever's fingerprint (configuration and weights) and every (doc id, text): any change to
    the model or the corpus gives a new key. ``encode(texts) -> embeddings`` replaces the retriever's own
    ``encode_passages`` (e.g. sharded over ``torch.distributed`` ranks or Ray workers; same rows, same order).
    """
    ids = list(corpus)
    texts = [passage_text(corpus[d]) for d in ids]
    cache_file = None
    if cache_dir is not None:
        h = hashlib.sha256(retriever.fingerprint().encode())
        for d, t in zip(ids, texts):
            h.update(d.encode() + b"\t" + t.encode() + b"\n")
        cache_file = Path(cache_dir) / f"passages-{h.hexdigest()[:32]}.npy"
        if cache_file.is_file():
            emb = np.load(cache_file, allow_pickle=False)
            if emb.shape == (len(ids), retriever.dim) and emb.dtype == np.float32:
                logger.info("passage embeddings from cache %s", cache_file)
                return emb
            logger.warning("cache %s has shape %s %s, expected (%d, %d) float32: re-encoding",
                           cache_file, emb.shape, emb.dtype, len(ids), retriever.dim)
    emb = (encode(texts) if encode is not None else
           retriever.encode_passages(texts, batch_size=batch_size, progress=progress))
    if cache_file is not None:
        from intdistill.journal import atomic_writer

        with atomic_writer(cache_file, mode="wb") as f:
            np.save(f, emb, allow_pickle=False)
    return emb


def first_stage(
    retriever: "Retriever",
    corpus: Mapping[str, Passage],
    queries: Mapping[str, Query],
    n: int,
    *,
    passage_text: Callable[[Passage], str] = Passage.full_text,
    batch_size: int = 64,
    progress: bool = False,
    cache_dir: str | os.PathLike | None = None,
    encode: Callable[[list[str]], np.ndarray] | None = None,
) -> Candidates:
    """Top-``n`` passages per query by the retriever's score (inner product of embeddings, i.e. cosine
    when the retriever normalises), by exact search over the whole corpus. ``encode``: see
    :func:`encode_corpus` (e.g. Ray workers)."""
    if not corpus:
        raise ValueError("corpus is empty: expected at least one passage")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(corpus):
        raise ValueError(f"n: expected an int in [1, {len(corpus)}] (the corpus size), got {n!r}")
    doc_ids = list(corpus)
    passage_emb = encode_corpus(
        retriever, corpus, passage_text=passage_text, batch_size=batch_size, progress=progress, cache_dir=cache_dir,
        encode=encode,
    )
    qids = list(queries)
    if not qids:
        return Candidates({}, retriever.name)
    query_emb = retriever.encode_queries([queries[q].text for q in qids], batch_size=batch_size, progress=progress)
    ids, scores = exact_search(query_emb, passage_emb, n, metric="ip")
    lists = {
        qid: CandidateList(tuple(doc_ids[i] for i in row), tuple(float(s) for s in srow), queries[qid].text)
        for qid, row, srow in zip(qids, ids, scores)
    }
    return Candidates(lists, retriever.name)


def rescore_pool(n: int, pool: int, limit: int | None = None) -> int:
    """How many dense candidates :func:`lexical_rescore` re-scores to keep the best ``n``: ``pool``, at least
    ``n``, at most ``limit`` (the passages there are)."""
    return max(n, pool) if limit is None else min(max(n, pool), limit)


def describe_hybrid(pool: int, weight: float) -> str:
    """How :func:`lexical_rescore` was applied, in the words every command prints it in."""
    return f"the dense top {pool} re-scored by 20 x cosine + {weight:g} x BM25 / max_q"


def corpus_bm25(corpus: Mapping[str, Passage], passage_text: Callable[[Passage], str] = Passage.full_text):
    """The BM25 statistics of ``corpus`` (``passage_text`` of every passage), as :func:`lexical_rescore` fits
    them and ``intdistill index`` saves them."""
    from intdistill.lexical import BM25

    return BM25.fit(passage_text(p) for p in corpus.values())


def lexical_rescore(cands: Candidates, corpus: Mapping[str, Passage], weight: float, n: int, *, scale: float = 20.0,
                    bm25=None, passage_text: Callable[[Passage], str] = Passage.full_text) -> Candidates:
    """Hybrid retrieval: every list re-scored by ``scale · score + weight · bm25(q, p) / max_q``, re-sorted
    (best first; ties keep the dense order) and cut to its first ``n``. The lexical term is the ranker's
    (:mod:`intdistill.lexical`, the same units as ``train-ranker --lexical-weight``); ``score`` is the
    first stage's (the cosine, for a retriever that normalises), so ``scale`` 20 puts the two on the ranker's
    footing. ``bm25``: fitted on ``corpus`` (``passage_text`` of every passage) when not given. Weight 0 only
    cuts the lists."""
    from intdistill.lexical import check_weight

    weight = check_weight(weight, "lexical weight")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    if bm25 is None and weight > 0:
        bm25 = corpus_bm25(corpus, passage_text)
    lists = {}
    for qid, cl in cands.items():
        fused = scale * np.asarray(cl.scores, dtype=np.float64)
        if weight > 0:
            missing = [d for d in cl.docids if d not in corpus]
            if missing:
                raise DataError(None, None, f"query {qid!r}: candidate {missing[0]!r} is not in the corpus")
            fused = fused + weight * bm25.normalized(cl.query, [passage_text(corpus[d]) for d in cl.docids])
        order = np.argsort(-fused, kind="stable")[:n]
        lists[qid] = CandidateList(tuple(cl.docids[i] for i in order), tuple(float(fused[i]) for i in order),
                                   cl.query)
    name = f"{cands.retriever}+bm25x{weight:g}" if weight > 0 else cands.retriever
    return Candidates(lists, name)
