"""Epoch checkpoints of the training loop: written atomically (a temporary directory renamed into place, then
fsynced), found again on a rerun, checked against the configuration, pruned; the RNG states and the metrics
history travel with them."""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from intdistill.data import DataError

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from intdistill.train.loop import Stage, TrainConfig

STATE_FILE = "trainer_state.json"
_EPOCH_DIR = re.compile(r"^epoch-(\d+)$")
# TrainConfig fields that may change between a run and its resumption (they do not change the result)
_RESUMABLE_CHANGES = ("out", "device", "progress", "keep_checkpoints", "resume")


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint ``root/epoch-N`` (highest N holding trainer_state.json), or None.
    Temporary directories of an interrupted save are removed."""
    root = Path(root)
    if not root.is_dir():
        return None
    best, best_n = None, -1
    for p in root.iterdir():
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            shutil.rmtree(p, ignore_errors=True)
            continue
        m = _EPOCH_DIR.match(p.name)
        if m and (p / STATE_FILE).is_file() and int(m.group(1)) > best_n:
            best, best_n = p, int(m.group(1))
    return best


def _save_checkpoint(root: Path, epoch: int, stage: Stage, optimizer, state: dict) -> Path:
    """Write checkpoint ``root/epoch-N`` atomically: everything goes into a temporary directory (the
    state file last, every file fsynced) which is then renamed into place."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"epoch-{epoch}"
    tmp = root / f".epoch-{epoch}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    stage.save(tmp / "model")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    rng_json, rng_tensors = _get_rng()
    torch.save(rng_tensors, tmp / "rng.pt")
    state = {"format": 1, **state, "rng": rng_json}
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
    for dirpath, _, files in os.walk(tmp):
        for name in files:
            _fsync(Path(dirpath) / name)
    if final.exists():  # left by an earlier run that was not resumed from it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    return final


def _read_state(ckpt: Path, cfg: TrainConfig, fingerprint: str) -> dict:
    path = ckpt / STATE_FILE
    try:
        st = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(path, None, f"expected a trainer state JSON file, got an unreadable one ({e})") from None
    old, new = st.get("config", {}), asdict(cfg)
    changed = [k for k in new if k not in _RESUMABLE_CHANGES and old.get(k) != new[k]]
    if changed:
        diffs = ", ".join(f"{k}: checkpoint {old.get(k)!r}, now {new[k]!r}" for k in changed)
        raise DataError(path, None, f"cannot resume with other settings ({diffs}); use the same settings, "
                                    "another --out, or --no-resume to start over")
    if st.get("fingerprint") != fingerprint:
        raise DataError(path, None, "cannot resume: the checkpoint was trained on other data or settings "
                                    "(training queries, labels or stage options differ); use another --out "
                                    "or --no-resume to start over")
    return st


def _get_rng() -> tuple[dict, dict]:
    """RNG states: python's and numpy's as JSON, torch's as tensors."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    js = {"python": [version, list(internal), gauss],
          "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return js, tensors


def _set_rng(js: dict, tensors: dict) -> None:
    version, internal, gauss = js["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = js["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _prune(root: Path, keep: int) -> None:
    done = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := _EPOCH_DIR.match(p.name)))
    for _, p in done[:-keep]:
        shutil.rmtree(p)


def _replace_dir(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst``, replacing it: copy beside it, then swap by renames."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    old = dst.with_name(f".{dst.name}.old")
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    shutil.copytree(src, tmp)
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    if old.exists():
        shutil.rmtree(old)


def _read_history(path: Path, upto: int) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("epoch", 0) <= upto:
                out.append(rec)
    return out


def _write_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> None:
    _atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))


def _atomic_write_text(path: Path, text: str) -> None:
    from intdistill.journal import atomic_writer

    with atomic_writer(path) as f:
        f.write(text)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
