"""Training losses of Intermediate Distillation, as pure functions on tensors.

Two stages, two losses (Li, Zhang, Zhang, 2024, "Intermediate Distillation: Data-Efficient
Distillation from Black-Box LLMs for Information Retrieval", arXiv 2406.12169):

- :func:`listmle`: stage 1, the cross-encoder ranker learns the LLM's permutation with the
  ListMLE (Plackett–Luce) likelihood of Xia et al. (2008).
- :func:`kl_distill`: stage 2, the bi-encoder retriever matches the frozen ranker's softmax
  distribution over each query's candidates.

Both take a batch of padded candidate lists as ``(batch, n_candidates)`` tensors with an optional
boolean ``mask`` (True = real candidate). Masked entries may hold anything, NaN included: they are
replaced before any arithmetic, contribute nothing to the loss and receive zero gradient.
Inputs are validated (shapes, dtypes, permutation structure) and a bad one raises ``ValueError``
that names it, says what was expected and what came. Validation reads a few booleans back from the
device, one synchronisation per call.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LISTMLE_REDUCTIONS", "KL_REDUCTIONS", "listmle", "kl_distill"]

#: Reductions accepted by :func:`listmle`.
LISTMLE_REDUCTIONS = ("mean", "sum", "none")
#: Reductions accepted by :func:`kl_distill`.
KL_REDUCTIONS = ("batchmean", "sum", "none")


def listmle(
    scores: Tensor,
    perm: Tensor,
    mask: Optional[Tensor] = None,
    *,
    top_k: Optional[Tensor] = None,
    reduction: str = "mean",
) -> Tensor:
    r"""ListMLE: negative Plackett–Luce log-likelihood of the teacher's permutation.

    For one list with model scores ``s`` (in candidate order) and teacher permutation ``π``
    (``π(i)`` = the candidate ranked ``i``-th, 0-based), over its ``m`` real candidates:

    .. math::

        L(s, π) = -\sum_{i=0}^{m-1} \Big[ s_{π(i)} - \log \sum_{j=i}^{m-1} \exp s_{π(j)} \Big]

    i.e. minus the log-probability that sampling candidates without replacement, each with
    probability proportional to ``exp(s)`` among those left, yields ``π``. ``L >= 0``; it is 0 only
    in the limit where every score exceeds the scores ranked below it by an unbounded margin, and it
    is invariant to adding a constant to a list's scores. The inner sums are one reverse
    log-cumsum-exp (``torch.logcumsumexp`` on the flipped, permuted scores), which is stable for
    any score magnitude. The last term is always 0.

    Top-k ListMLE (Xia, Liu, Li 2009) keeps only the first ``k`` terms of the sum: the likelihood
    that the teacher's top ``k`` come first, in its order, whatever the order of the rest:

    .. math::

        L_k(s, π) = -\sum_{i=0}^{\min(k, m)-1} \Big[ s_{π(i)} - \log \sum_{j=i}^{m-1} \exp s_{π(j)} \Big]

    The candidates below the top ``k`` stay in every denominator (they are what the top must beat)
    but their own order is not learned. With gold-first labels, ``k`` = the number of relevant
    candidates in the list: the loss then teaches "relevant above the rest" and nothing about the
    first stage's order of the rest, which the full ListMLE spends most of its gradient on.

    Args:
        scores: ``(batch, n)`` floating tensor, model scores in candidate order. Real entries must
            be finite.
        perm: ``(batch, n)`` integer tensor. ``perm[b, i]`` is the index (into ``scores[b]``) of the
            candidate the teacher ranks ``i``-th, best first. Every real candidate of row ``b``
            must appear exactly once in ``perm[b]``. The remaining entries (as many as the row has
            masked candidates) are padding: each is ``-1`` or the index of a masked candidate, and
            may sit anywhere in the row; padding is skipped and the real entries keep their order.
        mask: optional ``(batch, n)`` bool tensor over CANDIDATE positions (the positions of
            ``scores``, not of ``perm``); True = real candidate. None means all candidates are real,
            and then ``perm[b]`` must be a permutation of ``0..n-1``. Masked candidates take part in
            no numerator and no denominator. A row with no real candidate has loss 0.
        top_k: optional ``(batch,)`` integer tensor: row ``b`` keeps the terms of its first
            ``top_k[b]`` real perm slots (0 = the row contributes 0; values past the row's real
            candidates keep them all). None keeps every term (plain ListMLE).
        reduction: ``"mean"`` (default): mean over the batch of the per-list sums, as in the paper
            and in sentence-transformers' ``ListMLELoss``; rows without real candidates count in
            the denominator. ``"sum"``: sum over the batch. ``"none"``: the ``(batch,)`` per-list
            losses. The per-list loss is a SUM over positions and is never divided by the list
            length, so longer lists weigh more; divide the ``"none"`` output by ``mask.sum(1)``
            yourself if you want a per-candidate average.

    Returns:
        A scalar tensor (``"mean"``, ``"sum"``) or a ``(batch,)`` tensor (``"none"``), in
        ``scores``' dtype, differentiable with respect to ``scores``.

    Raises:
        ValueError: bad shape, dtype, reduction, non-finite real score, or a ``perm`` that does
            not rank each real candidate exactly once.

    References:
        Xia, Liu, Wang, Zhang, Li. "Listwise Approach to Learning to Rank: Theory and Algorithm",
        ICML 2008 (ListMLE). Xia, Liu, Li. "Statistical Consistency of Top-k Ranking", NeurIPS
        2009 (top-k ListMLE). Li, Zhang, Zhang. "Intermediate Distillation", arXiv 2406.12169,
        stage 1 (ranker trained on the LLM's ranking).
    """
    _check_reduction(reduction, LISTMLE_REDUCTIONS)
    _check_scores("scores", scores)
    batch, n = scores.shape
    _check_same_shape("perm", perm, scores.shape)
    if perm.dtype.is_floating_point or perm.dtype.is_complex or perm.dtype == torch.bool:
        raise ValueError(f"expected perm of an integer dtype (torch.long), got {perm.dtype}")
    mask = _check_mask(mask, scores)
    perm = perm.to(device=scores.device, dtype=torch.long)

    # Which perm slots are real: in range, not -1, and pointing at a real candidate.
    out_of_range = (perm < -1) | (perm >= n)
    if bool(out_of_range.any()):
        b, i = (int(x) for x in out_of_range.nonzero()[0])
        raise ValueError(
            f"expected perm entries in [-1, {n}) (candidate index or -1 for padding), "
            f"got perm[{b}, {i}] = {int(perm[b, i])}"
        )
    index = perm.clamp(min=0)  # (batch, n), -1 → 0, harmless once masked by `slot_real`
    slot_real = (perm >= 0) & mask.gather(1, index)  # (batch, n) over perm slots
    # Each real candidate must be ranked exactly once; masked candidates may be named any number of times.
    times_ranked = torch.zeros((batch, n), dtype=torch.long, device=scores.device)
    times_ranked.scatter_add_(1, index, slot_real.long())  # (batch, n) over candidates
    wrong = mask & (times_ranked != 1)
    if bool(wrong.any()):
        b, c = (int(x) for x in wrong.nonzero()[0])
        raise ValueError(
            f"expected every real candidate to appear exactly once in perm[{b}], "
            f"got candidate {c} {int(times_ranked[b, c])} times"
        )
    _check_finite("scores", scores, mask)

    # Scores in teacher order; padding slots → a very negative finite value so they add nothing to
    # any log-sum-exp (finite, not -inf, so no inf - inf and no NaN in the backward pass).
    very_negative = torch.finfo(scores.dtype).min
    ranked = scores.masked_fill(~mask, 0.0).gather(1, index)  # (batch, n)
    ranked = ranked.masked_fill(~slot_real, very_negative)  # (batch, n)
    # log Σ_{j≥i} exp(s_π(j)) for every slot i: reverse cumulative log-sum-exp.
    log_norm = torch.logcumsumexp(ranked.flip(1), dim=1).flip(1)  # (batch, n)
    counted = slot_real
    if top_k is not None:
        top_k = _check_top_k(top_k, batch, scores.device)
        rank_of_slot = torch.cumsum(slot_real.long(), dim=1) - 1  # (batch, n): i for the i-th real slot
        counted = slot_real & (rank_of_slot < top_k[:, None])  # (batch, n)
    log_prob = torch.where(counted, ranked - log_norm, torch.zeros_like(ranked))  # (batch, n)
    per_list = -log_prob.sum(dim=1)  # (batch,)

    if reduction == "mean":
        return per_list.mean()
    if reduction == "sum":
        return per_list.sum()
    return per_list


def kl_distill(
    student: Tensor,
    teacher: Tensor,
    mask: Optional[Tensor] = None,
    *,
    tau_student: float = 1.0,
    tau_teacher: float = 1.0,
    reduction: str = "batchmean",
) -> Tensor:
    r"""KL distillation: KL(P_teacher ‖ P_student) over each query's candidates.

    With ``P = softmax(scores / τ)`` over a query's real candidates (masked ones are excluded
    from both softmaxes):

    .. math::

        \mathrm{KL}(P_t \,\|\, P_s) = \sum_j P_t(j) \, \big[ \log P_t(j) - \log P_s(j) \big],
        \quad P_t = \mathrm{softmax}(t / τ_t), \; P_s = \mathrm{softmax}(s / τ_s)

    computed as ``F.kl_div(log P_s, log P_t, log_target=True)`` elementwise, then summed per row.
    ``KL >= 0``, with equality iff the two distributions match (e.g. ``student == teacher`` and
    ``tau_student == tau_teacher``), and it is invariant to adding a constant to a row of either.
    The teacher is DETACHED: no gradient flows into ``teacher``, which is the frozen ranker's scores
    (stage 2 of Intermediate Distillation). There is no ``τ²`` factor (sentence-transformers'
    ``DistillKLDivLoss`` multiplies by ``student_temperature**2``; multiply by ``tau_student**2``
    yourself to match it).

    Args:
        student: ``(batch, n)`` floating tensor, the retriever's scores (e.g. query·passage dot
            products) in candidate order. Real entries must be finite.
        teacher: ``(batch, n)`` floating tensor, the ranker's scores for the same candidates. Cast
            to ``student``'s dtype and detached. Real entries must be finite.
        mask: optional ``(batch, n)`` bool tensor, True = real candidate; None means all real.
            A row with no real candidate has loss 0.
        tau_student: temperature τ_s > 0 dividing the student scores.
        tau_teacher: temperature τ_t > 0 dividing the teacher scores.
        reduction: ``"batchmean"`` (default; sum of the per-row KLs divided by ``batch``, like
            ``torch.nn.KLDivLoss(reduction="batchmean")``; rows without real candidates count in
            the denominator), ``"sum"``, or ``"none"`` (the ``(batch,)`` per-row KLs).

    Returns:
        A scalar tensor (``"batchmean"``, ``"sum"``) or a ``(batch,)`` tensor (``"none"``),
        differentiable with respect to ``student`` only.

    Raises:
        ValueError: bad shape, dtype, temperature, reduction, or non-finite real score.

    References:
        Li, Zhang, Zhang. "Intermediate Distillation", arXiv 2406.12169, stage 2 (retriever
        distilled from the ranker). Hinton, Vinyals, Dean. "Distilling the Knowledge in a Neural
        Network", arXiv 1503.02531 (temperature-softened targets).
    """
    _check_reduction(reduction, KL_REDUCTIONS)
    _check_temperature("tau_student", tau_student)
    _check_temperature("tau_teacher", tau_teacher)
    _check_scores("student", student)
    _check_same_shape("teacher", teacher, student.shape)
    if not teacher.dtype.is_floating_point:
        raise ValueError(f"expected teacher of a floating dtype, got {teacher.dtype}")
    mask = _check_mask(mask, student)
    teacher = teacher.detach().to(device=student.device, dtype=student.dtype)
    _check_finite("student", student, mask)
    _check_finite("teacher", teacher, mask)

    very_negative = torch.finfo(student.dtype).min
    zeros = torch.zeros_like(student)
    # Divide first, then fill: masked entries become the most negative finite value, so they get
    # probability 0 (exp underflows) and an all-masked row stays finite (uniform), never NaN.
    log_q = F.log_softmax((student / tau_student).masked_fill(~mask, very_negative), dim=1)  # (batch, n)
    log_p = F.log_softmax((teacher / tau_teacher).masked_fill(~mask, very_negative), dim=1)  # (batch, n)
    # Masked entries → 0 on both sides, so their term is exp(0) * (0 - 0) = 0.
    log_q = torch.where(mask, log_q, zeros)
    log_p = torch.where(mask, log_p, zeros)
    pointwise = F.kl_div(log_q, log_p, reduction="none", log_target=True)  # (batch, n)
    per_row = pointwise.sum(dim=1)  # (batch,)

    if reduction == "batchmean":
        return per_row.sum() / student.shape[0]
    if reduction == "sum":
        return per_row.sum()
    return per_row


# ---------------------------------------------------------------------------------------------
# Validation helpers: each raises ValueError naming the argument, the expectation and the value.


def _check_reduction(reduction: str, allowed: tuple) -> None:
    if reduction not in allowed:
        raise ValueError(f"expected reduction in {allowed}, got {reduction!r}")


def _check_temperature(name: str, value: float) -> None:
    try:
        ok = 0.0 < float(value) < math.inf
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"expected {name} to be a positive finite number, got {value!r}")


def _check_scores(name: str, scores: Tensor) -> None:
    if not isinstance(scores, Tensor):
        raise ValueError(f"expected {name} to be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() != 2:
        raise ValueError(
            f"expected {name} of shape (batch, n_candidates), got {tuple(scores.shape)} ({scores.dim()}-D)"
        )
    if scores.shape[0] < 1 or scores.shape[1] < 1:
        raise ValueError(
            f"expected {name} with at least one list and one candidate, got shape {tuple(scores.shape)}"
        )
    if not scores.dtype.is_floating_point:
        raise ValueError(f"expected {name} of a floating dtype, got {scores.dtype}")


def _check_same_shape(name: str, tensor: Tensor, shape: torch.Size) -> None:
    if not isinstance(tensor, Tensor):
        raise ValueError(f"expected {name} to be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.shape != shape:
        raise ValueError(f"expected {name} of shape {tuple(shape)}, got {tuple(tensor.shape)}")


def _check_top_k(top_k, batch: int, device) -> Tensor:
    if not isinstance(top_k, Tensor):
        raise ValueError(f"expected top_k to be a torch.Tensor of shape ({batch},), got {type(top_k).__name__}")
    if top_k.shape != (batch,):
        raise ValueError(f"expected top_k of shape ({batch},), got {tuple(top_k.shape)}")
    if top_k.dtype.is_floating_point or top_k.dtype.is_complex or top_k.dtype == torch.bool:
        raise ValueError(f"expected top_k of an integer dtype (torch.long), got {top_k.dtype}")
    if bool((top_k < 0).any()):
        b = int((top_k < 0).nonzero()[0, 0])
        raise ValueError(f"expected top_k >= 0, got top_k[{b}] = {int(top_k[b])}")
    return top_k.to(device=device, dtype=torch.long)


def _check_mask(mask: Optional[Tensor], scores: Tensor) -> Tensor:
    if mask is None:
        return torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    _check_same_shape("mask", mask, scores.shape)
    if mask.dtype != torch.bool:
        raise ValueError(f"expected mask of dtype torch.bool (True = real candidate), got {mask.dtype}")
    return mask.to(scores.device)


def _check_finite(name: str, scores: Tensor, mask: Tensor) -> None:
    bad = mask & ~torch.isfinite(scores.detach())
    if bool(bad.any()):
        b, c = (int(x) for x in bad.nonzero()[0])
        raise ValueError(
            f"expected finite {name} at real (unmasked) candidates, got {name}[{b}, {c}] = {float(scores[b, c])}"
        )
