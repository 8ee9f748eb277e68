"""Dense passage index on usearch (HNSW): build, save, load (in memory or memory-mapped), search.

A :class:`DenseIndex` holds a usearch ``Index`` whose integer keys ``0..n-1`` are positions in the
doc-id list, the doc ids, and an :class:`IndexMeta` record (dimension, metric, storage type, HNSW
settings, the retriever's name and fingerprint, build figures).

Scores (higher = better; usearch reports distances, ``score = 1 - distance``):
- ``metric="cos"``: cosine similarity ``q·p / (|q| |p|)`` (0 for a zero vector, as in
  :func:`intdistill.candidates.exact_search`);
- ``metric="ip"``: inner product ``q·p``.
For ``cos`` with float storage, passages and queries are L2-normalised here and usearch searches by inner
product (same ranking and scores as its cosine metric, which recomputes both norms on every comparison
and is ~1.4x slower on f32). With ``dtype="f16"``, ``"bf16"`` or ``"i8"`` passages are stored quantised
(usearch scales unit vectors to int8 for ``i8`` and uses its cosine metric there), so scores and ranks
are approximate (f16 and bf16 halve memory and search about 2x faster than f32 at the same recall, see
benches/bench_index.py); ``i8`` is only offered with ``cos`` (usearch's int8 inner product is not in the
embeddings' units and clips values outside [-1, 1]).

Build-time check: ``recall@10`` of the HNSW search against exact float32 search
(:func:`intdistill.candidates.exact_search`) over the original embeddings, on a seeded sample of
``check_sample`` queries: given query embeddings when there are any, else passage embeddings (a
passage used as a query finds itself, so this recall is somewhat easier than with real queries).
``recall@k = mean_q |ANN_k(q) ∩ exact_k(q)| / k`` (:func:`intdistill.metrics.ann_recall`).

Retriever check (:meth:`DenseIndex.check_retriever`, done by :meth:`DenseIndex.search_text`):
a retriever whose dimension differs from the index's is always an error (``ValueError`` naming both);
one whose fingerprint (configuration and weights) differs from the one that built the index raises
:class:`RetrieverMismatchError` unless ``allow_mismatch=True``, which logs a warning instead: query
embeddings from other weights are in another space, so results would be silently wrong.

Saved layout (plain files, no pickle)::

    <dir>/index.usearch   the usearch index (``Index.save``; loaded with ``Index.restore``, ``view=True`` maps it)
    <dir>/docids.json     JSON list of doc ids; position i is usearch key i
    <dir>/meta.json       IndexMeta as JSON (written last: a directory without it is incomplete)

``intdistill index`` adds ``intdistill_lexical.json``, the corpus's BM25 statistics (:mod:`intdistill.lexical`), for
hybrid search (:func:`intdistill.stages.judge.index_bm25`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from intdistill.data import DataError, Passage

if TYPE_CHECKING:
    from intdistill.models import Retriever

logger = logging.getLogger(__name__)

from intdistill.index_meta import (CHECK_K, DOCIDS_FILE, DTYPES, FORMAT, INDEX_FILE, META_FILE,  # noqa: E402,F401
                                   METRICS, IndexMeta, _check_choice, _check_embeddings, _check_int, _read_json,
                                   _read_meta, _usearch_version, _write_json)
#: HNSW defaults: usearch's own connectivity (M) and expansion_add (efConstruction); expansion_search
#: (ef) raised from usearch's 64 to 256: on 384-d data of intrinsic dimension 32 (benches/bench_index.py)
#: recall@10 is 0.84 / 0.95 / 0.99 at ef 64 / 128 / 256 for 100k passages (0.89 / 0.97 at ef 128 / 256
#: for 300k); search time grows about linearly with ef. The build-time check reports the recall reached.
#: At 1M (f16) ef 256 reaches only 0.94 and ef 512 0.986: ``target_recall`` raises ef until the check meets it.
DEFAULT_CONNECTIVITY = 16
DEFAULT_EXPANSION_ADD = 128
DEFAULT_EXPANSION_SEARCH = 256
#: Indexes of up to this many passages are built on one thread. usearch's multi-threaded insertion can leave a
#: few nodes that no search reaches (measured with usearch 2.26: 0-3 of 200 SciFact abstracts per build, 2 of
#: 5,183; a passage searched with its own vector does not find itself), while single-threaded builds showed none
#: in 10 of 10 and are reproducible; they take about twice as long (0.8 s for 5,183 passages).
SINGLE_THREAD_BUILD_MAX = 100_000
#: The largest ef that ``target_recall`` tuning tries (doubling from the ef asked for).
MAX_TUNED_EF = 4096


class RetrieverMismatchError(ValueError):
    """The retriever's fingerprint differs from the one recorded when the index was built."""


class Hits(NamedTuple):
    """Search results, best first: ``docids[q][r]`` and ``scores (n_queries, k) float32``."""

    docids: list[list[str]]
    scores: np.ndarray


def _usearch():
    try:
        import usearch.index
    except ImportError as e:  # a core dependency, but say what is missing
        raise ImportError("intdistill.index needs the package 'usearch' (pip install usearch)") from e
    return usearch.index


def _tqdm_callback(total: int, desc: str, enabled: bool):
    """A usearch progress callback ``(processed, total) -> bool`` drawing a tqdm bar on stderr."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit="vec", disable=not enabled)

    def callback(processed, total):
        bar.update(processed - bar.n)
        return True

    # usearch checks the callback's annotations; this module's are strings (``from __future__ import annotations``)
    callback.__annotations__ = {"processed": int, "total": int, "return": bool}
    return bar, (callback if enabled else None)


class DenseIndex:
    """An HNSW index of passage embeddings with its doc ids; see the module docstring for conventions.

    Build with :meth:`build` (from a retriever and a corpus) or :meth:`from_embeddings`; persist with
    :meth:`save` / :meth:`load`.
    """

    def __init__(self, index, docids: Sequence[str], meta: IndexMeta):
        self._index = index
        self.docids: list[str] = list(docids)
        self.meta = meta

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        retriever: "Retriever",
        corpus: Mapping[str, Passage],
        *,
        metric: str | None = None,
        dtype: str = "f32",
        connectivity: int = DEFAULT_CONNECTIVITY,
        expansion_add: int = DEFAULT_EXPANSION_ADD,
        expansion_search: int = DEFAULT_EXPANSION_SEARCH,
        batch_size: int = 64,
        progress: bool = True,
        check_sample: int = 1000,
        check_queries: np.ndarray | None = None,
        seed: int = 0,
        target_recall: float | None = None,
        passage_text: Callable[[Passage], str] = Passage.full_text,
        cache_dir: str | os.PathLike | None = None,
        encode: Callable[[list[str]], np.ndarray] | None = None,
    ) -> "DenseIndex":
        """Encode ``corpus`` with ``retriever`` (:func:`intdistill.candidates.encode_corpus`) and index it.

        ``metric=None`` follows the retriever's own score: ``"cos"`` when it normalises, else ``"ip"``.
        A corpus loaded from a file (``intdistill.data.load_corpus``: its ``source``) is recorded as ``corpus_path``.
        ``check_queries``: query embeddings ``(nq, dim)`` for the recall check (else passages are sampled);
        ``check_sample=0`` skips the check; ``target_recall`` (see :meth:`from_embeddings`) needs it. ``encode``:
        see :func:`intdistill.candidates.encode_corpus` (e.g. Ray workers). Raises ``ValueError`` on an empty
        corpus.
        """
        from intdistill.candidates import encode_corpus

        if not corpus:
            raise ValueError("corpus is empty: expected at least one passage to index")
        if metric is None:
            metric = "cos" if retriever.normalize else "ip"
        elif metric == "cos" and not retriever.normalize:
            logger.warning("retriever %s scores by inner product (it does not normalise) but the index metric "
                           "is cos: rankings will differ from the retriever's own", retriever.name)
        t0 = time.perf_counter()
        emb = encode_corpus(retriever, corpus, passage_text=passage_text, batch_size=batch_size,
                            progress=progress, cache_dir=cache_dir, encode=encode)
        encode_seconds = time.perf_counter() - t0
        name = retriever.name
        path = os.path.abspath(os.path.expanduser(name)) if name and os.path.isdir(os.path.expanduser(name)) else ""
        index = cls.from_embeddings(
            emb, list(corpus), metric=metric, dtype=dtype, connectivity=connectivity, expansion_add=expansion_add,
            expansion_search=expansion_search, progress=progress, check_sample=check_sample,
            check_queries=check_queries, seed=seed, target_recall=target_recall,
        )
        index.meta = index._replace_meta(
            retriever_name=name, retriever_path=path, retriever_fingerprint=retriever.fingerprint(),
            retriever_normalize=bool(retriever.normalize), encode_seconds=round(encode_seconds, 3),
            corpus_path=os.path.abspath(source) if (source := getattr(corpus, "source", None)) else "",
        )
        return index

    @classmethod
    def from_embeddings(
        cls,
        embeddings: np.ndarray,
        docids: Sequence[str],
        *,
        metric: str = "cos",
        dtype: str = "f32",
        connectivity: int = DEFAULT_CONNECTIVITY,
        expansion_add: int = DEFAULT_EXPANSION_ADD,
        expansion_search: int = DEFAULT_EXPANSION_SEARCH,
        progress: bool = False,
        check_sample: int = 1000,
        check_queries: np.ndarray | None = None,
        seed: int = 0,
        target_recall: float | None = None,
    ) -> "DenseIndex":
        """Index ``embeddings (n, dim)`` under ``docids`` (row i is ``docids[i]``); no retriever recorded.

        ``target_recall``: after the build-time check, double the search breadth (ef, up to
        ``MAX_TUNED_EF``) until the check's recall@10 reaches it; the ef found is saved with the index. A
        target still missed at the cap is logged as a warning (raise ``expansion_add``/``connectivity``)."""
        from intdistill import __version__

        ui = _usearch()
        _check_choice("metric", metric, METRICS)
        _check_choice("dtype", dtype, DTYPES)
        if dtype == "i8" and metric != "cos":
            raise ValueError(f"dtype 'i8' needs metric 'cos' (usearch's int8 inner product is not in the "
                             f"embeddings' units), got metric {metric!r}")
        connectivity = _check_int("connectivity", connectivity, 2)
        expansion_add = _check_int("expansion_add", expansion_add, 1)
        expansion_search = _check_int("expansion_search", expansion_search, 1)
        check_sample = _check_int("check_sample", check_sample, 0)
        if target_recall is not None:
            if isinstance(target_recall, bool) or not isinstance(target_recall, (int, float)) \
                    or not 0 < target_recall <= 1:
                raise ValueError(f"target_recall: expected a number in (0, 1], got {target_recall!r}")
            if not check_sample:
                raise ValueError("target_recall needs the recall check: expected check_sample >= 1, got 0")
        docids = [str(d) for d in docids]
        emb = np.ascontiguousarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] == 0:
            raise ValueError(f"embeddings: expected a non-empty 2-D array (n_passages, dim), got shape {emb.shape}")
        emb = _check_embeddings(emb, "embeddings")
        if len(docids) != emb.shape[0]:
            raise ValueError(f"expected one doc id per embedding row, got {len(docids)} ids and {emb.shape[0]} rows")
        if len(set(docids)) != len(docids):
            seen: set[str] = set()
            dup = next(d for d in docids if d in seen or seen.add(d))
            raise ValueError(f"doc id {dup!r} appears twice; expected unique ids")
        n, dim = emb.shape

        usearch_metric = "cos" if dtype == "i8" else "ip"
        index = ui.Index(ndim=dim, metric=usearch_metric, dtype=dtype, connectivity=connectivity,
                         expansion_add=expansion_add, expansion_search=expansion_search)
        t0 = time.perf_counter()
        bar, callback = _tqdm_callback(n, "index passages", progress)
        with bar:
            index.add(np.arange(n, dtype=np.uint64), _prepare(emb, metric, usearch_metric), progress=callback,
                      threads=1 if n <= SINGLE_THREAD_BUILD_MAX else 0)
        build_seconds = time.perf_counter() - t0
        meta = IndexMeta(
            dim=dim, metric=metric, dtype=dtype, count=n, connectivity=connectivity, expansion_add=expansion_add,
            expansion_search=expansion_search, usearch_metric=usearch_metric, check_k=min(CHECK_K, n),
            build_seconds=round(build_seconds, 3), intdistill_version=__version__, usearch_version=_usearch_version(),
        )
        out = cls(index, docids, meta)
        if check_sample:
            if check_queries is not None:
                queries = _check_embeddings(check_queries, "check_queries", dim)
                source = "queries"
            else:
                queries, source = emb, "passages"
            if len(queries):
                rng = np.random.default_rng(seed)
                rows = np.sort(rng.choice(len(queries), size=min(check_sample, len(queries)), replace=False))
                from intdistill.candidates import exact_search
                from intdistill.metrics import ann_recall

                sample = queries[rows]
                exact_ids, _ = exact_search(sample, emb, meta.check_k, metric=metric)

                def measure() -> float:
                    return ann_recall(out.search_ids(sample, meta.check_k)[0], exact_ids, meta.check_k)

                recall = measure()
                logger.info("index of %d passages: recall@%d %.4f vs exact on %d %s at ef %d", n, meta.check_k,
                            recall, len(rows), source, out.expansion_search)
                tuned = {}
                if target_recall is not None:
                    while recall < target_recall and out.expansion_search < MAX_TUNED_EF:
                        out.expansion_search = min(2 * out.expansion_search, MAX_TUNED_EF)
                        recall = measure()
                        logger.info("target recall %.3f: ef %d gives %.4f", target_recall, out.expansion_search,
                                    recall)
                    if recall < target_recall:
                        logger.warning("target recall@%d %.3f not reached: %.4f at the largest ef %d; a denser "
                                       "graph (expansion_add, connectivity) is needed", meta.check_k, target_recall,
                                       recall, out.expansion_search)
                    tuned = {"target_recall": float(target_recall), "expansion_search": out.expansion_search,
                             "tuned_from": expansion_search if out.expansion_search != expansion_search else None}
                out.meta = out._replace_meta(check_recall=round(recall, 6), check_queries=len(rows),
                                             check_source=source, **tuned)
        return out

    def recall(self, query_emb: np.ndarray, passage_emb: np.ndarray, k: int = CHECK_K) -> float:
        """ANN recall@k of this index vs exact float32 search over ``passage_emb`` (the indexed rows)."""
        from intdistill.candidates import exact_search
        from intdistill.metrics import ann_recall

        exact_ids, _ = exact_search(query_emb, passage_emb, k, metric=self.metric)
        approx_ids, _ = self.search_ids(query_emb, k)
        return ann_recall(approx_ids, exact_ids, k)

    def _replace_meta(self, **changes) -> IndexMeta:
        return replace(self.meta, **changes)

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        return len(self.docids)

    def __repr__(self) -> str:
        m = self.meta
        return (f"DenseIndex({m.count} passages, dim={m.dim}, metric={m.metric!r}, dtype={m.dtype!r}, "
                f"retriever={m.retriever_name!r})")

    @property
    def dim(self) -> int:
        return self.meta.dim

    @property
    def metric(self) -> str:
        return self.meta.metric

    @property
    def dtype(self) -> str:
        return self.meta.dtype

    @property
    def expansion_search(self) -> int:
        """HNSW search breadth (ef): larger finds more true neighbours, more slowly. Settable."""
        return int(self._index.expansion_search)

    @expansion_search.setter
    def expansion_search(self, value: int) -> None:
        self._index.expansion_search = _check_int("expansion_search", value, 1)

    @property
    def usearch_index(self):
        """The underlying ``usearch.index.Index`` (keys are positions in :attr:`docids`)."""
        return self._index

    # ------------------------------------------------------------------ search
    def _check_k(self, k) -> int:
        return _check_int("k", k, 1, len(self))

    def search_ids(self, query_emb: np.ndarray, k: int, *, exact: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(ids int64 (nq, k), scores float32 (nq, k))``, best first; ids are rows of :attr:`docids`.

        ``exact=True`` scores every stored (for f16/bf16/i8: quantised) vector:
        :func:`intdistill.candidates.exact_search` (BLAS tiles and a Rust top-k; ~6x usearch's own exhaustive
        search at 1M passages) over :meth:`stored_vectors`, with the same scores as the HNSW search. A row for
        which HNSW returns fewer than ``k`` hits (a poorly connected graph) is redone exactly and logged.
        """
        q = _check_embeddings(query_emb, "query_emb", self.dim)
        k = self._check_k(k)
        if len(q) == 0:
            return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
        if exact:
            return self._exact(q, k)
        keys, dist, counts = self._search(q, k)
        ids = keys.astype(np.int64)  # (nq, k)
        scores = (1.0 - dist).astype(np.float32)  # usearch distance is 1 - cos / 1 - ip
        short = np.flatnonzero(counts < k)
        if len(short):
            logger.warning("HNSW returned fewer than k=%d hits for %d of %d queries: searched those exactly",
                           k, len(short), len(q))
            ids[short], scores[short] = self._exact(q[short], k)
        return ids, scores

    def stored_vectors(self) -> np.ndarray:
        """The indexed vectors as usearch stores them, row i = passage ``docids[i]``: float32 for f32 and bf16,
        float16 for f16, int8 for i8 (usearch's scaled values); for ``cos`` with float storage, unit rows. A
        copy (for a memory-mapped index, read from the file)."""
        import warnings

        keys = np.asarray(self._index.keys, dtype=np.int64)
        with warnings.catch_warnings():  # usearch's own np.array(keys) call warns under numpy 2 (harmless)
            warnings.simplefilter("ignore", DeprecationWarning)
            vectors = np.asarray(self._index.vectors)
        out = np.empty_like(vectors)
        out[keys] = vectors
        return out

    def _exact(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        from intdistill.candidates import exact_search

        usearch_metric = self.meta.usearch_metric  # "ip" on prepared vectors, or "cos" (i8)
        return exact_search(_prepare(q, self.metric, usearch_metric), self.stored_vectors(), k,
                            metric="cos" if usearch_metric == "cos" else "ip")

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """usearch HNSW batch search as ``(keys (nq, k), distances (nq, k), counts (nq,))``; usearch answers a
        one-row batch with a single ``Matches`` (only its valid hits), which is padded here."""
        matches = self._index.search(_prepare(q, self.metric, self.meta.usearch_metric), k)
        if hasattr(matches, "counts"):  # BatchMatches
            return matches.keys, matches.distances, matches.counts
        n = len(matches.keys)
        keys = np.zeros((1, k), dtype=np.uint64)
        dist = np.full((1, k), np.nan, dtype=np.float32)
        keys[0, :n], dist[0, :n] = matches.keys[:k], matches.distances[:k]
        return keys, dist, np.array([n], dtype=np.uint64)

    def _hits(self, ids: np.ndarray, scores: np.ndarray) -> Hits:
        docids = self.docids
        return Hits([[docids[i] for i in row] for row in ids.tolist()], scores)

    def search(self, query_emb: np.ndarray, k: int) -> Hits:
        """Top-``k`` passages per query row of ``query_emb (nq, dim)`` by HNSW: ``Hits(docids, scores)``."""
        return self._hits(*self.search_ids(query_emb, k))

    def search_exact(self, query_emb: np.ndarray, k: int) -> Hits:
        """Top-``k`` by usearch's exhaustive search (for checking :meth:`search`): exact over the stored
        vectors, i.e. over quantised ones for ``f16`` / ``i8`` indexes."""
        return self._hits(*self.search_ids(query_emb, k, exact=True))

    def check_retriever(self, retriever: "Retriever", *, allow_mismatch: bool = False) -> None:
        """Raise if ``retriever`` cannot have built this index (policy in the module docstring)."""
        m = self.meta
        if retriever.dim != m.dim:
            raise ValueError(f"retriever {retriever.name!r} gives {retriever.dim}-d embeddings but the index holds "
                             f"{m.dim}-d embeddings (built with {m.retriever_name or 'raw embeddings'!r})")
        if not m.retriever_fingerprint:
            logger.warning("the index records no retriever fingerprint (built from raw embeddings): cannot check "
                           "that %r encoded its passages", retriever.name)
            return
        if retriever.fingerprint() != m.retriever_fingerprint:
            message = (f"retriever {retriever.name!r} differs (configuration or weights) from {m.retriever_name!r} "
                       f"that built the index: its query embeddings are not comparable with the indexed passages")
            if not allow_mismatch:
                raise RetrieverMismatchError(message + "; pass allow_mismatch=True to search anyway")
            logger.warning("%s; searching anyway (allow_mismatch)", message)

    def search_text(
        self, retriever: "Retriever", texts: Sequence[str], k: int, *, allow_mismatch: bool = False,
        batch_size: int = 64, exact: bool = False,
    ) -> Hits:
        """Encode query ``texts`` with ``retriever`` (after :meth:`check_retriever`) and search."""
        k = self._check_k(k)
        self.check_retriever(retriever, allow_mismatch=allow_mismatch)
        q = retriever.encode_queries(texts, batch_size=batch_size)
        return self._hits(*self.search_ids(q, k, exact=exact))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``index.usearch``, ``docids.json`` and (last) ``meta.json`` into directory ``path``."""
        out = Path(path)
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"index path {out} is a file; expected a directory (new or existing)")
        out.mkdir(parents=True, exist_ok=True)
        (out / META_FILE).unlink(missing_ok=True)  # the directory is incomplete until meta.json is back
        tmp = out / (INDEX_FILE + ".tmp")
        self._index.save(str(tmp))
        os.replace(tmp, out / INDEX_FILE)
        _write_json(out / DOCIDS_FILE, self.docids, indent=None)
        _write_json(out / META_FILE, asdict(self.meta), indent=2)
        return out

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = False) -> "DenseIndex":
        """Read a directory written by :meth:`save`; ``mmap=True`` memory-maps the usearch file (``view``:
        read-only, pages load on demand). Raises ``FileNotFoundError`` naming what is missing and
        ``DataError`` when the files disagree."""
        ui = _usearch()
        d = Path(path)
        expected = f"a directory written by DenseIndex.save ({INDEX_FILE}, {DOCIDS_FILE}, {META_FILE})"
        if not d.is_dir():
            raise FileNotFoundError(f"index directory {d} not found; expected {expected}")
        for name in (META_FILE, DOCIDS_FILE, INDEX_FILE):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name} not found; expected {expected}")
        meta = _read_meta(d / META_FILE)
        docids = _read_json(d / DOCIDS_FILE)
        if not isinstance(docids, list) or not all(isinstance(x, str) for x in docids):
            raise DataError(d / DOCIDS_FILE, None, "expected a JSON list of doc id strings")
        if len(docids) != meta.count:
            raise DataError(d / DOCIDS_FILE, None,
                            f"expected {meta.count} doc ids (meta.json count), got {len(docids)}")
        try:
            index = ui.Index.restore(str(d / INDEX_FILE), view=mmap)
        except (ValueError, RuntimeError) as e:
            raise DataError(d / INDEX_FILE, None, f"expected a usearch index file, got an unreadable one ({e})") from e
        if index is None:
            raise DataError(d / INDEX_FILE, None, "expected a usearch index file, got one usearch cannot read")
        got = (int(index.ndim), len(index), str(index.dtype).rsplit(".", 1)[-1].lower(),
               str(index.metric_kind).rsplit(".", 1)[-1].lower())
        want = (meta.dim, meta.count, meta.dtype, meta.usearch_metric)
        if got != want:
            raise DataError(d / INDEX_FILE, None,
                            f"expected (dim, count, dtype, usearch metric) = {want} as meta.json says, got {got}")
        index.expansion_search = meta.expansion_search
        return cls(index, docids, meta)


def _prepare(x: np.ndarray, metric: str, usearch_metric: str) -> np.ndarray:
    """What usearch gets: for ``cos`` searched as ``ip``, rows scaled to unit norm (zero rows stay zero,
    so their cosine is 0); otherwise ``x`` itself."""
    if metric == "cos" and usearch_metric == "ip":
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))
    return x
