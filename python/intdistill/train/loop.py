"""The training loop both stages share: AdamW, linear warmup/decay, mixed precision, epoch checkpoints
that survive a kill, dev evaluation keeping the best epoch, progress and a metrics log.

A stage (:class:`Stage`: stage 1 trains the cross-encoder, stage 2 the bi-encoder) says what its training
examples are (query ids) and how to turn a micro-batch of them into a loss; :func:`train` does the rest.

Output directory ``cfg.out``::

    <model files>               the final model: the best epoch's by the dev metric, else the last epoch's
    best/                       the best epoch's model (when there is a dev set)
    checkpoints/epoch-N/        model/ (stage.save), optimizer.pt, rng.pt, trainer_state.json
    metrics.jsonl               one line per epoch: train loss (and each step's), learning rate, seconds, dev measures
    train_summary.json          epochs, steps, best epoch and metric, the configuration

Policies:
- Steps: each optimizer step sees ``batch_size * grad_accum`` queries (``grad_accum`` forward/backward
  passes of ``batch_size`` queries); the last step of an epoch may see fewer. The loss of a step is the
  mean over its queries. The query order of epoch ``e`` is a permutation drawn from ``(seed, e)`` alone,
  so a resumed run sees the same order as an uninterrupted one.
- Schedule: AdamW (no weight decay on biases and norm weights, i.e. parameters with < 2 dimensions),
  ``transformers.get_linear_schedule_with_warmup`` over all steps of all epochs.
- Precision: on CUDA, autocast to bf16 where supported, else fp16 with a gradient scaler; fp32 on CPU.
  Losses are computed in fp32.
- Checkpoints: after every epoch, written into a temporary directory and renamed into place, so
  ``checkpoints/epoch-N`` exists only when complete. A rerun resumes from the newest one (model,
  optimizer, scheduler, scaler, RNG and stage state), refusing one made with other settings or data.
  Only the newest ``keep_checkpoints`` are kept. Our own state is JSON; ``optimizer.pt`` and ``rng.pt``
  hold tensors only and are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from intdistill.data import DataError

from intdistill.train.checkpoints import (STATE_FILE, _atomic_write_text, _prune, _read_history,  # noqa: F401
                                          _read_state, _replace_dir, _save_checkpoint, _set_rng, _write_jsonl,
                                          latest_checkpoint)

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    out: str  # output directory (final model, best/, checkpoints/, metrics.jsonl)
    epochs: int = 3  # passes over the training queries
    lr: float = 2e-5  # peak AdamW learning rate (after warmup; then linear decay to 0)
    head_lr: float | None = None  # peak lr of a task head new to the checkpoint (a ranker's classifier); None = lr
    batch_size: int = 8  # queries per forward/backward pass, each with all its candidates
    grad_accum: int = 1  # passes accumulated per optimizer step: a step sees batch_size * grad_accum queries
    warmup_ratio: float = 0.1  # share of all optimizer steps spent warming the learning rate up from 0
    weight_decay: float = 0.01  # AdamW decoupled weight decay (not applied to biases and norm weights)
    max_grad_norm: float = 1.0  # clip the global gradient norm to this before each step; 0 = no clipping
    seed: int = 0  # seeds python, numpy and torch, and the per-epoch query order
    device: str = "auto"  # "auto": cuda when available, else cpu; or any torch device ("cuda:1", "cpu")
    precision: str = "auto"  # "auto": bf16 (else fp16) autocast on CUDA, fp32 on CPU; or fp32 / bf16 / fp16
    eval_every: int = 1  # dev evaluation every N epochs and after the last one; 0 = never
    metric: str = "nDCG@10"  # dev measure that picks the best epoch (higher is better)
    keep_checkpoints: int = 2  # newest epoch checkpoints kept on disk (older ones deleted); >= 1
    resume: bool | None = None  # None: resume when out/checkpoints has one; True: must; False: start over
    progress: bool = True  # tqdm progress bars on stderr

    def __post_init__(self):
        ints = {"epochs": 1, "batch_size": 1, "grad_accum": 1, "eval_every": 0, "keep_checkpoints": 1}
        for name, low in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: expected an int, got {self.seed!r}")
        for name, ok, want in (
            ("lr", lambda v: 0 < v < math.inf, "a positive finite number"),
            ("warmup_ratio", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
            ("weight_decay", lambda v: 0 <= v < math.inf, "a finite number >= 0"),
            ("max_grad_norm", lambda v: 0 <= v < math.inf, "a finite number >= 0 (0 = no clipping)"),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(v):
                raise ValueError(f"{name}: expected {want}, got {v!r}")
        h = self.head_lr
        if h is not None and (isinstance(h, bool) or not isinstance(h, (int, float)) or not 0 < h < math.inf):
            raise ValueError(f"head_lr: expected a positive finite number or None, got {h!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if not self.out:
            raise ValueError("out: expected an output directory, got an empty path")


class Stage:
    """What a training stage gives :func:`train`. Subclasses set ``name``, ``model`` (and ``dev``, if they
    evaluate) and implement :meth:`examples` and :meth:`loss`; the rest has working defaults."""

    name: str = "train"
    model: torch.nn.Module  # the module trained (its parameters go to the optimizer)
    dev = None  # the dev set (an object with ``.measures``), or None
    dropout: bool = True  # the training passes run in train mode (False: eval mode, no dropout)

    def examples(self) -> Sequence[str]:
        """Training query ids in a fixed order (the loop shuffles indices into it per epoch)."""
        raise NotImplementedError

    def loss(self, qids: Sequence[str]) -> torch.Tensor:
        """Scalar fp32 loss, the MEAN over ``qids`` (one micro-batch), with a graph to the model."""
        raise NotImplementedError

    def save(self, path: Path) -> None:
        """Write the model as a directory that loads on its own (``Ranker.save`` / ``Retriever.save``)."""
        self.model.save(path)

    def restore(self, path: Path) -> None:
        """Load weights written by :meth:`save` into ``self.model`` in place (the optimizer keeps them)."""
        fresh = type(self.model).load(path, device="cpu")
        self.model.load_state_dict(fresh.state_dict())

    def start_epoch(self, epoch: int) -> None:
        """Called before epoch ``epoch`` (1-based) trains, e.g. to re-mine candidates."""

    def dev_measures(self) -> tuple[str, ...]:
        """Names of the measures :meth:`evaluate` reports (empty: no dev set)."""
        return self.dev.measures if self.dev is not None else ()

    def evaluate(self) -> dict[str, float]:
        """Dev measures of the current model, named as in :meth:`dev_measures` (``{}``: no dev set)."""
        return {}

    def state(self) -> dict:
        """JSON-serialisable state to keep in checkpoints (e.g. the mined candidates)."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` when resuming."""

    def fingerprint(self) -> str:
        """Identifies the stage's data and settings: a resume with a different one is refused."""
        return hashlib.sha256("\n".join(self.examples()).encode()).hexdigest()


@dataclass(frozen=True)
class TrainResult:
    out: Path  # the output directory (holds the final model)
    epochs: int  # epochs completed
    steps: int  # optimizer steps taken over all epochs
    resumed_from: int  # epoch of the checkpoint resumed from; 0 = started fresh
    best_epoch: int | None  # epoch with the best dev metric (None: no dev evaluation)
    best_metric: float | None  # its value
    history: tuple[dict, ...] = field(default_factory=tuple)  # the metrics.jsonl lines, one per epoch


# ----------------------------------------------------------------------------------------- the loop


def train(stage: Stage, cfg: TrainConfig) -> TrainResult:
    """Train ``stage.model`` with ``cfg``; see the module docstring for steps, checkpoints and outputs."""
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from intdistill.train import distributed

    out = Path(cfg.out)
    dist, device = distributed.setup(resolve_device(cfg.device))
    amp_dtype = resolve_precision(cfg.precision, device)
    seed_everything(cfg.seed)
    model = stage.model.to(device)
    examples = list(stage.examples())
    if not examples:
        raise DataError(None, None, f"{stage.name}: expected at least one training query, got none")
    # a step: batch_size * grad_accum queries on each of the world's processes (one process: world = 1)
    per_step = cfg.batch_size * cfg.grad_accum * dist.world
    steps_per_epoch = math.ceil(len(examples) / per_step)
    progress = cfg.progress and dist.main
    net = None
    if dist.active:
        from torch.nn.parallel import DistributedDataParallel

        # BERT's pooler is unused by mean pooling and a ranker's frozen tower has no gradient: find_unused
        net = DistributedDataParallel(_StageLoss(stage), device_ids=[device] if device.type == "cuda" else None,
                                      find_unused_parameters=True)
        if dist.main:
            print(f"{stage.name}: {dist.world} processes; effective batch {per_step} queries a step "
                  f"({cfg.batch_size} per pass x {cfg.grad_accum} passes x {dist.world} processes)", file=sys.stderr)
    total_steps = steps_per_epoch * cfg.epochs

    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay, lr=cfg.lr, head_lr=cfg.head_lr), lr=cfg.lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(cfg.warmup_ratio * total_steps), total_steps)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    fingerprint = stage.fingerprint()
    if stage.dev_measures() and cfg.metric not in stage.dev_measures():
        raise ValueError(f"metric: expected one of the dev measures {list(stage.dev_measures())}, got {cfg.metric!r}")

    epoch, step, best_epoch, best_metric = 0, 0, None, None
    ckpt_root = out / "checkpoints"
    latest = latest_checkpoint(ckpt_root)
    if latest is not None and cfg.resume is False:
        if dist.main:
            logger.warning("%s: --no-resume: removing the old checkpoints in %s", stage.name, ckpt_root)
            shutil.rmtree(ckpt_root)
        dist.barrier()
        latest = None
    elif latest is None and cfg.resume is True:
        raise DataError(ckpt_root, None, "resume: expected a complete checkpoint (epoch-N), found none")
    if latest is not None:
        st = _read_state(latest, cfg, fingerprint)
        stage.restore(latest / "model")
        optimizer.load_state_dict(torch.load(latest / "optimizer.pt", map_location=device, weights_only=True))
        scheduler.load_state_dict(st["scheduler"])
        if st["scaler"]:
            scaler.load_state_dict(st["scaler"])
        _set_rng(st["rng"], torch.load(latest / "rng.pt", weights_only=True))
        stage.load_state(st["stage"])
        epoch, step, best_epoch, best_metric = st["epoch"], st["step"], st["best_epoch"], st["best_metric"]
        if best_epoch == epoch and dist.main:  # a kill between the checkpoint and its copy to best/ leaves it stale
            _replace_dir(latest / "model", out / "best")
        if dist.main:
            print(f"{stage.name}: resuming from {latest} (epoch {epoch}, step {step})", file=sys.stderr)
    history = _read_history(out / "metrics.jsonl", upto=epoch)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        if epoch == 0 and (out / "best").is_dir():  # left by an earlier run: not this run's best
            shutil.rmtree(out / "best")
        _write_jsonl(out / "metrics.jsonl", history)
    dist.barrier()
    resumed_from = epoch

    while epoch < cfg.epochs:
        epoch += 1
        t0 = time.perf_counter()
        with autocast(device, amp_dtype):
            stage.start_epoch(epoch)
        model.train(stage.dropout)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(examples))
        loss_sum, seen, step_losses = 0.0, 0, []
        bar = tqdm(total=steps_per_epoch, desc=f"{stage.name} epoch {epoch}/{cfg.epochs}", unit="step",
                   file=sys.stderr, disable=not progress, dynamic_ncols=True)
        for s in range(0, len(order), per_step):
            step_qids = [examples[i] for i in order[s : s + per_step]]
            mine = list(distributed.shard(step_qids, dist))  # this process's part of the step
            part = train_step(stage, mine, optimizer, scheduler, scaler, batch_size=cfg.batch_size,
                              max_grad_norm=cfg.max_grad_norm, device=device, amp_dtype=amp_dtype,
                              n_total=len(step_qids), net=net, world=dist.world, fallback=step_qids[:1])
            step_sum = distributed.all_sum([part * len(mine)], dist)[0]
            step_losses.append(round(step_sum / len(step_qids), 6))
            loss_sum += step_sum
            seen += len(step_qids)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        bar.close()
        record = {"epoch": epoch, "step": step, "train_loss": loss_sum / seen, "step_losses": step_losses,
                  "lr": scheduler.get_last_lr()[0], "train_seconds": round(time.perf_counter() - t0, 3)}

        is_best = False
        if cfg.eval_every and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            t1 = time.perf_counter()
            with autocast(device, amp_dtype):
                dev = stage.evaluate()
            if dev:
                record["dev"] = dev
                record["eval_seconds"] = round(time.perf_counter() - t1, 3)
                is_best = best_metric is None or dev[cfg.metric] > best_metric
                if is_best:
                    best_epoch, best_metric = epoch, float(dev[cfg.metric])
                record["best"] = is_best
                if dist.main:
                    print(f"{stage.name} epoch {epoch}: dev {_fmt(dev)}" + ("  (best)" if is_best else ""),
                          file=sys.stderr)
        history.append(record)

        if dist.main:  # rank 0 alone writes; the others wait for the checkpoint to be complete
            ckpt = _save_checkpoint(
                ckpt_root, epoch, stage, optimizer,
                {"epoch": epoch, "step": step, "best_epoch": best_epoch, "best_metric": best_metric,
                 "config": asdict(cfg), "fingerprint": fingerprint, "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict() if scaler.is_enabled() else None, "stage": stage.state()},
            )
            if is_best:
                _replace_dir(ckpt / "model", out / "best")
            _write_jsonl(out / "metrics.jsonl", history)  # after the checkpoint: a resume rewrites it from there
            _prune(ckpt_root, cfg.keep_checkpoints)
        dist.barrier()

    if dist.main:
        if best_epoch is not None and (out / "best").is_dir():
            stage.restore(out / "best")
        stage.save(out)
        summary = {"epochs": epoch, "steps": step, "steps_per_epoch": steps_per_epoch, "resumed_from": resumed_from,
                   "best_epoch": best_epoch, "best_metric": best_metric, "metric": cfg.metric,
                   "final_model": "best" if best_epoch is not None else "last", "config": asdict(cfg),
                   "world_size": dist.world, "effective_batch": per_step}
        _atomic_write_text(out / "train_summary.json", json.dumps(summary, indent=2) + "\n")
    dist.barrier()
    return TrainResult(out, epoch, step, resumed_from, best_epoch, best_metric, tuple(history))


class _StageLoss(torch.nn.Module):
    """``stage.loss`` as a module, so ``DistributedDataParallel`` sees one forward per pass (a stage's loss runs
    several chunked forwards of its model) and owns the model's parameters."""

    def __init__(self, stage: Stage):
        super().__init__()
        self.model = stage.model
        self._stage = [stage]  # not a submodule

    def forward(self, qids: Sequence[str]) -> torch.Tensor:
        return self._stage[0].loss(qids)


def train_step(stage: Stage, qids: Sequence[str], optimizer, scheduler, scaler, *, batch_size: int,
               max_grad_norm: float, device: torch.device, amp_dtype: torch.dtype | None, n_total: int | None = None,
               net=None, world: int = 1, fallback: Sequence[str] = ()) -> float:
    """One optimizer step over ``qids``: forward/backward passes of ``batch_size`` queries with gradients
    accumulated (each pass weighted by its share of the step's ``n_total`` queries, so the step's gradient is
    that of the mean loss), clipping, optimizer, scheduler (not stepped when fp16's gradient scaler skipped the
    optimizer step). Returns the mean loss over ``qids``.

    With ``net`` (the stage's loss under ``DistributedDataParallel``, ``world`` processes), ``qids`` is this
    process's part of the step: each pass is weighted by ``world * len(pass) / n_total`` so DDP's average of
    the processes' gradients is the gradient of the whole step's mean loss; gradients are all-reduced on the
    last pass only (``no_sync`` before). A process with no query in the step runs one zero-weight pass on
    ``fallback`` so the all-reduce still happens."""
    n_total = n_total or len(qids)
    micros = [list(qids[m : m + batch_size]) for m in range(0, len(qids), batch_size)] or [None]
    total = 0.0
    for i, micro in enumerate(micros):
        sync_later = net is not None and i < len(micros) - 1
        with net.no_sync() if sync_later else nullcontext():
            with autocast(device, amp_dtype):
                batch = micro if micro is not None else list(fallback)
                loss = net(batch) if net is not None else stage.loss(batch)
            weight = world * len(micro) / n_total if micro is not None else 0.0
            scaler.scale(loss * weight).backward()
        if micro is not None:
            total += float(loss.detach()) * len(micro)
    scaler.unscale_(optimizer)
    if max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(stage.model.parameters(), max_grad_norm)
    scale = scaler.get_scale() if scaler.is_enabled() else None
    scaler.step(optimizer)
    scaler.update()
    if scale is None or scaler.get_scale() >= scale:  # fp16: a step the scaler skipped (inf/NaN gradients, scale
        scheduler.step()                              # lowered) leaves the schedule where it is (as accelerate does)
    optimizer.zero_grad(set_to_none=True)
    return total / max(len(qids), 1)


def forward_chunk_size(device: torch.device) -> int:
    """Sequences per forward pass inside a batch (see :func:`forward_in_chunks`): 8 on CPU, where a pass
    costs what its tokens cost and small length-sorted chunks waste the least padding; 64 elsewhere, where
    wide passes keep the accelerator busy."""
    return 8 if device.type == "cpu" else 64


def forward_in_chunks(forward, batch: Mapping[str, torch.Tensor], chunk: int) -> torch.Tensor:
    """``forward`` over the rows of a right-padded batch in length-sorted chunks of at most ``chunk`` rows,
    each cut to its own longest row; the outputs (first axis = rows) come back in input order, with
    their graph. The same values as ``forward(batch)`` (padding is masked out), with less padding."""
    mask = batch["attention_mask"]  # (rows, width)
    n = mask.shape[0]
    if n <= chunk:
        return forward(batch)
    lengths = mask.sum(dim=1)  # (rows,)
    order = torch.argsort(lengths, descending=True, stable=True)  # (rows,)
    widths = lengths[order].tolist()
    outs, start = [], 0
    for rows in torch.tensor_split(order, math.ceil(n / chunk)):
        width = int(widths[start])  # the chunk's longest row (sorted descending)
        outs.append(forward({key: value[rows, :width] for key, value in batch.items()}))
        start += len(rows)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(n, device=order.device)
    return torch.cat(outs)[inverse]


# ----------------------------------------------------------------------------------------- helpers


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; anything else as ``torch.device`` reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (``None``: plain fp32). ``"auto"``: bf16 on CUDA when supported, else fp16;
    fp32 elsewhere. fp16 off CUDA is refused (CPU autocast has no fp16 gradient scaling)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision fp16 needs a CUDA device, got {device}")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype``, or a no-op context for fp32."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def head_parameter_names(model: torch.nn.Module) -> set[str]:
    """Names of the parameters outside the pretrained encoder of the (first) Hugging Face model inside
    ``model``: its task head (e.g. ``classifier.*`` of a ``...ForSequenceClassification``). Empty for a bare
    encoder (a retriever)."""
    for prefix, module in model.named_modules():
        base = getattr(module, "base_model_prefix", None)
        if base and hasattr(module, base) and getattr(module, base) is not module:
            lead = f"{prefix}." if prefix else ""
            return {lead + n for n, _ in module.named_parameters() if not n.startswith(base + ".")}
    return set()


def param_groups(model: torch.nn.Module, weight_decay: float, *, lr: float | None = None,
                 head_lr: float | None = None) -> list[dict]:
    """AdamW groups: weight decay on matrices (>= 2 dims), none on biases and norm weights (1 dim). With
    ``head_lr`` (and ``lr``), the task head (:func:`head_parameter_names`) learns at ``head_lr``: a head drawn
    at random learns at the pace of the pretrained body's tiny steps otherwise."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if head_lr is None:
        head = set()
    elif hasattr(model, "new_parameter_names"):  # a composite (the ranker) knows its own new parameters
        head = model.new_parameter_names()
    else:
        head = head_parameter_names(model)
    groups = []
    for is_head in (False, True):
        part = [p for n, p in named if (n in head) == is_head]
        extra = {"lr": head_lr} if is_head else ({"lr": lr} if lr is not None else {})
        for decay in (True, False):
            ps = [p for p in part if (p.dim() >= 2) == decay]
            if ps or not is_head:
                groups.append({"params": ps, "weight_decay": weight_decay if decay else 0.0, **extra})
    return groups


def _fmt(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
