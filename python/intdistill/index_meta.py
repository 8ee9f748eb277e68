"""An index's ``meta.json`` (:class:`IndexMeta`) and files, and the argument checks of :mod:`intdistill.index`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import numpy as np

from intdistill.data import DataError


METRICS = ("cos", "ip")
DTYPES = ("f32", "f16", "bf16", "i8")
INDEX_FILE = "index.usearch"
DOCIDS_FILE = "docids.json"
META_FILE = "meta.json"
FORMAT = 1
#: Cutoff of the build-time recall check.
CHECK_K = 10


@dataclass(frozen=True)
class IndexMeta:
    """What ``meta.json`` records about an index."""

    dim: int  # embedding dimension
    metric: str  # "cos" or "ip"
    dtype: str  # storage type of passage vectors: "f32", "f16", "bf16" or "i8"
    count: int  # passages indexed
    connectivity: int  # HNSW links per node (M)
    expansion_add: int  # HNSW candidate list size while building (efConstruction)
    expansion_search: int  # HNSW candidate list size while searching (ef), as built
    usearch_metric: str  # the metric usearch computes: "ip" on pre-normalised vectors for cos (but i8)
    retriever_name: str = ""  # as given to Retriever.load ("" when built from raw embeddings)
    retriever_path: str = ""  # absolute path of the retriever directory when it was a local one
    retriever_fingerprint: str = ""  # Retriever.fingerprint() of the model that encoded the corpus
    retriever_normalize: bool | None = None  # whether that retriever L2-normalises its embeddings
    corpus_path: str = ""  # absolute path of the corpus file the passages came from ("": not known)
    check_k: int = CHECK_K  # cutoff of the build-time recall check (min(10, count))
    check_recall: float | None = None  # ANN recall@check_k vs exact float32 search (None: not measured)
    check_queries: int = 0  # queries in the check
    check_source: str = ""  # "queries" (given query embeddings) or "passages" (sampled passage embeddings)
    target_recall: float | None = None  # ef was raised (doubled) at build time until check_recall reached this
    tuned_from: int | None = None  # the ef asked for, when target_recall raised it to expansion_search
    encode_seconds: float = 0.0  # time to encode the corpus
    build_seconds: float = 0.0  # time to add all vectors to the HNSW graph
    intdistill_version: str = ""
    usearch_version: str = ""
    format: int = FORMAT


def _check_choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < low or (
        high is not None and value > high
    ):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name}: expected an int {bound}, got {value!r}")
    return int(value)


def _check_embeddings(emb, what: str, dim: int | None = None) -> np.ndarray:
    """A C-contiguous finite float32 ``(n, dim)`` array."""
    arr = np.ascontiguousarray(emb, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array (n, dim), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{what}: expected dimension {dim} (the index's), got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{what}: expected finite values, got {arr[tuple(bad)]} at row {bad[0]}")
    return arr


def _usearch_version() -> str:
    import usearch

    return str(usearch.__version__)


def _write_json(path: Path, obj, *, indent: int | None) -> None:
    from intdistill.journal import atomic_writer

    with atomic_writer(path) as f:
        f.write(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def _read_json(path: Path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, f"expected JSON, got invalid JSON ({e.msg})") from e


def _read_meta(path: Path) -> IndexMeta:
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise DataError(path, None, f"expected a JSON object, got {type(raw).__name__}")
    if raw.get("format") != FORMAT:
        raise DataError(path, None, f"expected index format {FORMAT}, got {raw.get('format')!r}")
    known = {f.name for f in fields(IndexMeta)}
    required = {f.name for f in fields(IndexMeta) if f.default is MISSING}
    missing = sorted(required - raw.keys())
    if missing:
        raise DataError(path, None, f"expected keys {', '.join(sorted(required))}; missing {', '.join(missing)}")
    meta = IndexMeta(**{key: value for key, value in raw.items() if key in known})
    if meta.metric not in METRICS or meta.usearch_metric not in METRICS or meta.dtype not in DTYPES:
        raise DataError(path, None, f"expected metric and usearch_metric in {METRICS} and dtype in {DTYPES}, "
                                    f"got {meta.metric!r}, {meta.usearch_metric!r} and {meta.dtype!r}")
    for name in ("dim", "count", "expansion_search"):
        value = getattr(meta, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(path, None, f"{name}: expected a positive integer, got {value!r}")
    return meta
