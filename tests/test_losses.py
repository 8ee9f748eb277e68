"""Tests for intdistill.losses: hand-computed values, gradcheck, properties, and agreement with
sentence-transformers' ListMLELoss / DistillKLDivLoss run through their own code paths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from intdistill.losses import KL_REDUCTIONS, LISTMLE_REDUCTIONS, kl_distill, listmle

E = math.e
SETTINGS = settings(max_examples=150, deadline=None)


def t64(rows):
    return torch.tensor(rows, dtype=torch.float64)


def lt(rows):
    return torch.tensor(rows, dtype=torch.long)


def bt(rows):
    return torch.tensor(rows, dtype=torch.bool)


# ---------------------------------------------------------------------------------------------
# Pure-Python references (loops over plain floats, no torch)


def ref_listmle_row(scores, perm, mask, top_k=None):
    """-Σ_i [s_π(i) - log Σ_{j≥i} exp s_π(j)] over the real slots of perm, in order (the first top_k)."""
    order = [c for c in perm if c >= 0 and mask[c]]
    total = 0.0
    for i in range(len(order) if top_k is None else min(top_k, len(order))):
        tail = [scores[c] for c in order[i:]]
        top = max(tail)
        total -= scores[order[i]] - (top + math.log(sum(math.exp(x - top) for x in tail)))
    return total


def ref_kl_row(student, teacher, mask, tau_s, tau_t):
    """Σ_j p_j (log p_j - log q_j), p = softmax(teacher/τ_t), q = softmax(student/τ_s), real j only."""
    idx = [j for j in range(len(mask)) if mask[j]]
    if not idx:
        return 0.0

    def log_softmax(values):
        top = max(values)
        lse = top + math.log(sum(math.exp(v - top) for v in values))
        return [v - lse for v in values]

    log_q = log_softmax([student[j] / tau_s for j in idx])
    log_p = log_softmax([teacher[j] / tau_t for j in idx])
    return sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q))


# ---------------------------------------------------------------------------------------------
# Strategies


@st.composite
def ranked_batches(draw, max_batch=4, max_n=8, min_real=0, bound=20.0):
    """(scores, perm, mask) as float64 / long / bool tensors, with padding anywhere in perm.

    Padding slots of perm hold -1 or the index of a masked candidate; masked scores hold junk.
    """
    batch = draw(st.integers(1, max_batch))
    n = draw(st.integers(max(1, min_real), max_n))
    scores = draw(arrays(np.float64, (batch, n), elements=st.floats(-bound, bound)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask = np.zeros((batch, n), dtype=bool)
    perm = np.empty((batch, n), dtype=np.int64)
    for b in range(batch):
        k = int(rng.integers(min_real, n + 1))
        real = rng.permutation(n)[:k]  # candidates that exist, in teacher order
        mask[b, real] = True
        masked = np.flatnonzero(~mask[b])
        slots = np.sort(rng.choice(n, size=k, replace=False))  # where the real ones sit in perm
        pad = [int(rng.choice(masked)) if rng.random() < 0.5 else -1 for _ in range(n - k)]
        row = np.array(pad + [0] * k, dtype=np.int64)
        rest = np.setdiff1d(np.arange(n), slots)
        row[rest] = pad
        row[slots] = real
        perm[b] = row
        scores[b, ~mask[b]] = rng.choice([np.nan, np.inf, -np.inf, 1e30, -7.0], size=n - k)
    return torch.from_numpy(scores), torch.from_numpy(perm), torch.from_numpy(mask)


@st.composite
def score_pairs(draw, max_batch=4, max_n=8, min_real=0, bound=20.0):
    """(student, teacher, mask) float64 / float64 / bool with junk at masked entries."""
    batch = draw(st.integers(1, max_batch))
    n = draw(st.integers(max(1, min_real), max_n))
    elements = st.floats(-bound, bound)
    student = draw(arrays(np.float64, (batch, n), elements=elements))
    teacher = draw(arrays(np.float64, (batch, n), elements=elements))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mask = np.zeros((batch, n), dtype=bool)
    for b in range(batch):
        mask[b, rng.permutation(n)[: int(rng.integers(min_real, n + 1))]] = True
    student[~mask] = np.nan
    teacher[~mask] = np.inf
    return torch.from_numpy(student), torch.from_numpy(teacher), torch.from_numpy(mask)


temperatures = st.floats(0.05, 20.0)


# ---------------------------------------------------------------------------------------------
# ListMLE: hand-computed values
#
# scores s = [2, 1, 0] (candidates 0, 1, 2).
# π = identity (0, 1, 2):
#   i=0: s=2, log(e² + e¹ + e⁰) = log(7.389056 + 2.718282 + 1)
#                               = log(11.107338)                        = 2.407606 → 2 - 2.407606 = -0.407606
#   i=1: s=1, log(e¹ + e⁰)      = log(3.718282)                         = 1.313262 → 1 - 1.313262 = -0.313262
#   i=2: s=0, log(e⁰)           = 0                                                → 0
#   L = 0.407606 + 0.313262 = 0.720868
# π = (1, 2, 0) (candidate 1 first, then 2, then 0; NOT an involution, so a perm/inverse mix-up shows):
#   i=0: s=1, log(e¹ + e⁰ + e²) = 2.407606 → 1 - 2.407606 = -1.407606
#   i=1: s=0, log(e⁰ + e²)      = log(8.389056) = 2.126928 → 0 - 2.126928 = -2.126928
#   i=2: s=2, log(e²) = 2 → 0
#   L = 1.407606 + 2.126928 = 3.534534
#   (the inverse permutation (2, 0, 1) would give 2.407606 + 0.313262 = 2.720868)
LISTMLE_IDENTITY = 0.720868
LISTMLE_PERMUTED = 3.534534


def test_listmle_hand_identity():
    assert listmle(t64([[2.0, 1.0, 0.0]]), lt([[0, 1, 2]])).item() == pytest.approx(LISTMLE_IDENTITY, abs=1e-6)
    # closed form, to more digits
    exact = -((2 - math.log(E**2 + E + 1)) + (1 - math.log(E + 1)))
    assert listmle(t64([[2.0, 1.0, 0.0]]), lt([[0, 1, 2]])).item() == pytest.approx(exact, rel=1e-12)


def test_listmle_hand_permuted_not_inverse():
    value = listmle(t64([[2.0, 1.0, 0.0]]), lt([[1, 2, 0]])).item()
    assert value == pytest.approx(LISTMLE_PERMUTED, abs=1e-6)
    assert value != pytest.approx(2.720868, abs=1e-3)


def test_listmle_hand_padded_and_reductions():
    # Row 0: identity list of 3. Row 1: candidates 0..2 real as in the π=(1,2,0) example, candidate 3 is
    # padding holding NaN; perm has a -1 slot in the middle and the padded candidate's index at the end.
    scores = t64([[2.0, 1.0, 0.0, 5.0], [2.0, 1.0, 0.0, float("nan")]])
    perm = lt([[0, 1, 2, 3], [1, -1, 2, 0]])
    mask = bt([[True, True, True, True], [True, True, True, False]])
    # Row 0 has 4 real candidates here, so compute it by hand too: scores (2,1,0,5), π = identity:
    #   2 - log(e²+e+1+e⁵) = 2 - log(159.520497) = 2 - 5.072173 = -3.072173
    #   1 - log(e+1+e⁵)   = 1 - log(152.131441) = 1 - 5.024744 = -4.024744
    #   0 - log(1+e⁵)     = 0 - 5.006715                       = -5.006715
    #   5 - 5 = 0                                 → L = 12.103632
    none = listmle(scores, perm, mask, reduction="none")
    assert none.shape == (2,)
    assert none[0].item() == pytest.approx(12.103632, abs=1e-5)
    assert none[1].item() == pytest.approx(LISTMLE_PERMUTED, abs=1e-6)
    assert listmle(scores, perm, mask, reduction="sum").item() == pytest.approx(12.103632 + LISTMLE_PERMUTED, abs=1e-5)
    assert listmle(scores, perm, mask).item() == pytest.approx((12.103632 + LISTMLE_PERMUTED) / 2, abs=1e-5)


# Top-k ListMLE, same scores [2, 1, 0]:
#   π = identity, k = 1: only i=0 counts → 2.407606 - 2 = 0.407606; k = 2 → 0.720868 (the full value: the
#   last term is 0); k = 0 → 0.
#   π = (1, 2, 0), k = 1 → 1.407606.
LISTMLE_TOP1_IDENTITY = 0.407606


def test_listmle_top_k_hand():
    s = t64([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    perm = lt([[0, 1, 2], [0, 1, 2], [0, 1, 2], [1, 2, 0], [0, 1, 2]])
    got = listmle(s, perm, top_k=lt([1, 2, 0, 1, 9]), reduction="none").tolist()
    assert got == pytest.approx([LISTMLE_TOP1_IDENTITY, LISTMLE_IDENTITY, 0.0, 1.407606, LISTMLE_IDENTITY], abs=1e-6)
    assert got[0] == pytest.approx(math.log(E**2 + E + 1) - 2, rel=1e-12)


def test_listmle_top_k_counts_real_slots_only():
    # padding slot (-1) before the first real one: k = 1 still means the first REAL slot (candidate 1)
    scores = t64([[2.0, 1.0, 0.0, float("nan")]])
    mask = bt([[True, True, True, False]])
    got = listmle(scores, lt([[-1, 1, 2, 0]]), mask, top_k=lt([1]))
    assert got.item() == pytest.approx(1.407606, abs=1e-6)


def test_listmle_top_k_gradient_still_reaches_the_rest():
    # the rest is in the denominator: its scores get gradient though their own order is not learned
    s = t64([[2.0, 1.0, 0.0]]).requires_grad_(True)
    listmle(s, lt([[0, 1, 2]]), top_k=lt([1])).backward()
    p = torch.softmax(s.detach()[0], 0)
    assert s.grad[0].tolist() == pytest.approx([p[0].item() - 1, p[1].item(), p[2].item()], abs=1e-12)


def test_listmle_top_k_bad_input():
    s, perm = t64([[2.0, 1.0]]), lt([[0, 1]])
    for bad, msg in ((lt([1, 1]), "shape"), (torch.tensor([1.0]), "integer"), (lt([-1]), ">= 0"), ([1], "Tensor")):
        with pytest.raises(ValueError, match=msg):
            listmle(s, perm, top_k=bad)


@SETTINGS
@given(ranked_batches(), st.lists(st.integers(0, 9), min_size=4, max_size=4))
def test_listmle_top_k_matches_python_reference(batch, ks):
    scores, perm, mask = batch
    top = lt(ks[: scores.shape[0]])
    got = listmle(scores, perm, mask, top_k=top, reduction="none")
    want = [ref_listmle_row(s, p, m, k) for s, p, m, k in zip(scores.tolist(), perm.tolist(), mask.tolist(), ks)]
    assert got.tolist() == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_listmle_not_normalised_by_length_and_empty_rows_count():
    # Two copies of the identity list: per-list SUM, not divided by 3. An all-masked row gives 0
    # and still counts in the mean's denominator.
    scores = t64([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [9.0, 9.0, 9.0]])
    perm = lt([[0, 1, 2], [0, 1, 2], [-1, -1, -1]])
    mask = bt([[True] * 3, [True] * 3, [False] * 3])
    none = listmle(scores, perm, mask, reduction="none")
    assert none.tolist() == pytest.approx([LISTMLE_IDENTITY, LISTMLE_IDENTITY, 0.0], abs=1e-6)
    assert listmle(scores, perm, mask).item() == pytest.approx(2 * LISTMLE_IDENTITY / 3, abs=1e-6)


def test_listmle_stable_for_huge_scores_float32():
    # scores (0, 1000), π = identity: -(0 - log(e⁰ + e¹⁰⁰⁰)) - 0 = 1000 + log(1 + e⁻¹⁰⁰⁰) = 1000.
    # π = (1, 0): -(1000 - log(e¹⁰⁰⁰ + e⁰)) = log(1 + e⁻¹⁰⁰⁰) = 0.
    scores = torch.tensor([[0.0, 1000.0], [0.0, 1000.0]], dtype=torch.float32, requires_grad=True)
    loss = listmle(scores, lt([[0, 1], [1, 0]]), reduction="none")
    assert loss.tolist() == pytest.approx([1000.0, 0.0], abs=1e-3)
    loss.sum().backward()
    assert torch.isfinite(scores.grad).all()


def test_listmle_accepts_int32_perm_and_float32():
    value = listmle(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[1, 2, 0]], dtype=torch.int32))
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(LISTMLE_PERMUTED, abs=1e-5)


def test_listmle_gradcheck():
    torch.manual_seed(0)
    scores = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    perm = lt([[4, 2, 0, 1, 3], [1, -1, 3, 0, 4], [2, 0, 4, 3, -1]])
    mask = bt([[True] * 5, [True, True, False, True, True], [True, False, True, False, True]])
    for reduction in LISTMLE_REDUCTIONS:
        assert torch.autograd.gradcheck(lambda s: listmle(s, perm, mask, reduction=reduction), (scores,))
    listmle(scores, perm, mask).backward()
    assert scores.grad[1, 2] == 0 and scores.grad[2, 1] == 0 and scores.grad[2, 3] == 0


def test_listmle_gradient_hand():
    # dL/ds_k = -[#{i: π(i)=k}] + Σ_{i ≤ rank(k)} softmax over the tail starting at i, evaluated at k.
    # scores (0, 0), π = identity: L = -(0 - log 2) = log 2; dL/ds0 = -1 + 1/2 = -1/2, dL/ds1 = 1/2 + (-1 + 1) = 1/2.
    scores = t64([[0.0, 0.0]]).requires_grad_()
    loss = listmle(scores, lt([[0, 1]]))
    assert loss.item() == pytest.approx(math.log(2), rel=1e-12)
    loss.backward()
    assert scores.grad[0].tolist() == pytest.approx([-0.5, 0.5], abs=1e-12)


# ---------------------------------------------------------------------------------------------
# ListMLE: properties


@SETTINGS
@given(ranked_batches())
def test_listmle_matches_python_reference(batch):
    scores, perm, mask = batch
    got = listmle(scores, perm, mask, reduction="none")
    want = [ref_listmle_row(s, p, m) for s, p, m in zip(scores.tolist(), perm.tolist(), mask.tolist())]
    assert got.tolist() == pytest.approx(want, rel=1e-9, abs=1e-9)


@SETTINGS
@given(ranked_batches(), arrays(np.float64, 4, elements=st.floats(-50, 50)))
def test_listmle_shift_invariant(batch, shifts):
    scores, perm, mask = batch
    shift = torch.from_numpy(shifts[: scores.shape[0]]).unsqueeze(1)  # (batch, 1)
    before = listmle(scores, perm, mask, reduction="none")
    after = listmle(scores + shift, perm, mask, reduction="none")
    assert after.tolist() == pytest.approx(before.tolist(), rel=1e-9, abs=1e-9)


@SETTINGS
@given(ranked_batches(), st.floats(-1e6, 1e6))
def test_listmle_masked_values_change_nothing(batch, junk):
    scores, perm, mask = batch
    other = scores.clone()
    other[~mask] = junk
    want = listmle(scores, perm, mask, reduction="none").tolist()
    assert listmle(other, perm, mask, reduction="none").tolist() == want
    grad_scores = other.clone().requires_grad_()
    listmle(grad_scores, perm, mask).backward()
    assert (grad_scores.grad[~mask] == 0).all() and torch.isfinite(grad_scores.grad).all()


@SETTINGS
@given(ranked_batches())
def test_listmle_nonnegative(batch):
    scores, perm, mask = batch
    assert (listmle(scores, perm, mask, reduction="none") >= 0).all()


@SETTINGS
@given(ranked_batches(max_batch=1, min_real=2), st.floats(0.1, 5.0))
def test_listmle_tends_to_zero_with_growing_margins(batch, margin):
    # Scores that follow π with margin m: s_π(i) = -m·i. Then L = Σ_i log(1 + e^{-m} + e^{-2m} + ...),
    # strictly decreasing in m and below (n-1)·e^{-m}/(1-e^{-m}) → 0.
    _, perm, mask = batch
    order = [c for c in perm[0].tolist() if c >= 0 and mask[0, c]]

    def loss_at(m):
        scores = torch.zeros(perm.shape, dtype=torch.float64)
        for i, c in enumerate(order):
            scores[0, c] = -m * i
        return listmle(scores, perm, mask).item()

    values = [loss_at(margin * k) for k in (1, 2, 4, 8)]
    assert all(a > b for a, b in zip(values, values[1:]))
    for k, v in zip((1, 2, 4, 8), values):
        m = margin * k
        # log(1 + y) <= y; slack for rounding in the O(m·n)-sized terms that cancel to v
        assert v <= (len(order) - 1) * math.exp(-m) / (1 - math.exp(-m)) + 1e-12
    assert loss_at(60.0) < 1e-20


# ---------------------------------------------------------------------------------------------
# ListMLE vs sentence-transformers' ListMLELoss, through its forward with a stub model


class FixedLogitsCrossEncoder(torch.nn.Module):
    """Stands in for a CrossEncoder: the pair ("q{b}", "d{c}") gets logit table[b, c].

    ListMLELoss.forward calls model.preprocess(pairs) → tokens, model(tokens)["scores"], and reads
    model.num_labels and model.device; that is all this implements. Gradients flow into `table`.
    """

    num_labels = 1

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table
        self.device = table.device

    def preprocess(self, pairs, prompt=None, task=None):
        idx = [(int(q[1:]), int(d[1:])) for q, d in pairs]
        return {"idx": torch.tensor(idx, dtype=torch.long)}

    def forward(self, tokens):
        idx = tokens["idx"]
        return {"scores": self.table[idx[:, 0], idx[:, 1]].unsqueeze(1)}


@settings(max_examples=100, deadline=None)
@given(ranked_batches(min_real=1), st.booleans())
def test_listmle_matches_sentence_transformers(batch, respect_input_order):
    from sentence_transformers.cross_encoder.losses import ListMLELoss

    scores, perm, mask = batch
    scores = scores.float()  # ST computes in float32
    # Mapping: each query's docs are its REAL candidates. With respect_input_order=False they are
    # given in candidate order with labels m, m-1, ..., 1 by teacher rank (distinct, so ST's
    # descending sort recovers π exactly); with respect_input_order=True they are given in π order.
    queries, docs, labels = [], [], []
    for b in range(scores.shape[0]):
        order = [c for c in perm[b].tolist() if c >= 0 and mask[b, c]]
        label_of = {c: float(len(order) - i) for i, c in enumerate(order)}
        listed = order if respect_input_order else [c for c in range(scores.shape[1]) if mask[b, c]]
        queries.append(f"q{b}")
        docs.append([f"d{c}" for c in listed])
        labels.append(torch.tensor([label_of[c] for c in listed]))

    table = scores.masked_fill(~mask, 0.0).requires_grad_()
    st_loss = ListMLELoss(FixedLogitsCrossEncoder(table), respect_input_order=respect_input_order)
    theirs = st_loss([queries, docs], labels)
    mine_scores = scores.clone().requires_grad_()
    mine = listmle(mine_scores, perm, mask)
    assert mine.item() == pytest.approx(theirs.item(), rel=1e-4, abs=1e-4)
    if theirs.requires_grad and theirs.grad_fn is not None:
        theirs.backward()
        mine.backward()
        assert torch.allclose(mine_scores.grad[mask], table.grad[mask], rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# KL distillation: hand-computed values
#
# Three candidates: teacher logits log(1, 2, 1) → P_t = (1/4, 1/2, 1/4);
#                   student logits log(1, 1, 2) → P_s = (1/4, 1/4, 1/2).
#   KL = 1/4·log(1) + 1/2·log(2) + 1/4·log(1/2) = (1/2 - 1/4)·log 2 = log(2)/4 = 0.173287
#   (symmetric by construction: KL(P_s‖P_t) is also log(2)/4, so this one does not pin the direction)
# Two candidates:   teacher log(1, 3) → P_t = (1/4, 3/4); student (0, 0) → P_s = (1/2, 1/2).
#   KL = 1/4·log(1/2) + 3/4·log(3/2) = -0.173287 + 0.304099 = 0.130812
#   (the wrong direction, KL(P_s‖P_t) = 1/2·log(2) + 1/2·log(2/3) = 0.143841)
KL_THREE = math.log(2) / 4
KL_TWO = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)


def test_kl_hand_three():
    student = torch.log(t64([[1.0, 1.0, 2.0]]))
    teacher = torch.log(t64([[1.0, 2.0, 1.0]]))
    assert kl_distill(student, teacher).item() == pytest.approx(KL_THREE, rel=1e-12)
    assert KL_THREE == pytest.approx(0.173287, abs=1e-6)


def test_kl_hand_temperatures():
    # Scaling the logits by τ and dividing by the same τ gives the same distributions: log(2)/4 again.
    student = 0.5 * torch.log(t64([[1.0, 1.0, 2.0]]))
    teacher = 2.0 * torch.log(t64([[1.0, 2.0, 1.0]]))
    got = kl_distill(student, teacher, tau_student=0.5, tau_teacher=2.0)
    assert got.item() == pytest.approx(KL_THREE, rel=1e-12)
    # ... while τ = 1 on both gives something else
    assert kl_distill(student, teacher).item() != pytest.approx(KL_THREE, rel=1e-3)


def test_kl_hand_masked_and_reductions():
    # Row 0: the 3-candidate example. Row 1: the 2-candidate example padded with a junk third entry.
    student = torch.log(t64([[1.0, 1.0, 2.0], [1.0, 1.0, 1.0]]))
    student[1, 2] = float("nan")
    teacher = torch.log(t64([[1.0, 2.0, 1.0], [1.0, 3.0, 1.0]]))
    teacher[1, 2] = float("inf")
    mask = bt([[True, True, True], [True, True, False]])
    assert KL_TWO == pytest.approx(0.130812, abs=1e-6)
    assert 0.5 * math.log(2) + 0.5 * math.log(2 / 3) == pytest.approx(0.143841, abs=1e-6)
    assert kl_distill(student, teacher, mask, reduction="none").tolist() == pytest.approx([KL_THREE, KL_TWO], rel=1e-12)
    assert kl_distill(student, teacher, mask, reduction="sum").item() == pytest.approx(KL_THREE + KL_TWO, rel=1e-12)
    assert kl_distill(student, teacher, mask).item() == pytest.approx((KL_THREE + KL_TWO) / 2, rel=1e-12)


def test_kl_empty_row_counts_in_batchmean():
    student = t64([[0.0, 0.0], [3.0, 1.0]])
    teacher = torch.log(t64([[1.0, 3.0], [1.0, 1.0]]))
    mask = bt([[True, True], [False, False]])
    assert kl_distill(student, teacher, mask, reduction="none").tolist() == pytest.approx([KL_TWO, 0.0], rel=1e-12)
    assert kl_distill(student, teacher, mask).item() == pytest.approx(KL_TWO / 2, rel=1e-12)


def test_kl_teacher_detached():
    student = t64([[0.3, -1.0, 2.0]]).requires_grad_()
    teacher = t64([[1.0, 0.0, -1.0]]).requires_grad_()
    kl_distill(student, teacher).backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum() > 0
    # and a loss of a detached student has nothing to differentiate
    assert not kl_distill(student.detach(), teacher).requires_grad


def test_kl_gradcheck():
    torch.manual_seed(1)
    student = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(3, 5, dtype=torch.float64)
    mask = bt([[True] * 5, [True, False, True, True, False], [False, False, True, False, False]])
    for reduction in KL_REDUCTIONS:
        assert torch.autograd.gradcheck(
            lambda s: kl_distill(s, teacher, mask, tau_student=0.7, tau_teacher=1.9, reduction=reduction), (student,)
        )


def test_kl_gradient_hand():
    # d KL / d s_j = (q_j - p_j) / τ_s. Two-candidate example: q = (1/2, 1/2), p = (1/4, 3/4), τ_s = 1.
    student = t64([[0.0, 0.0]]).requires_grad_()
    kl_distill(student, torch.log(t64([[1.0, 3.0]]))).backward()
    assert student.grad[0].tolist() == pytest.approx([0.25, -0.25], abs=1e-12)


# ---------------------------------------------------------------------------------------------
# KL distillation: properties


@SETTINGS
@given(score_pairs(), temperatures, temperatures)
def test_kl_matches_python_reference(batch, tau_s, tau_t):
    student, teacher, mask = batch
    got = kl_distill(student, teacher, mask, tau_student=tau_s, tau_teacher=tau_t, reduction="none")
    want = [
        ref_kl_row(s, t, m, tau_s, tau_t) for s, t, m in zip(student.tolist(), teacher.tolist(), mask.tolist())
    ]
    assert got.tolist() == pytest.approx(want, rel=1e-7, abs=1e-9)


@SETTINGS
@given(score_pairs(), temperatures, temperatures)
def test_kl_nonnegative(batch, tau_s, tau_t):
    student, teacher, mask = batch
    assert (kl_distill(student, teacher, mask, tau_student=tau_s, tau_teacher=tau_t, reduction="none") >= -1e-12).all()


@SETTINGS
@given(score_pairs(), temperatures)
def test_kl_zero_when_student_equals_teacher(batch, tau):
    student, _, mask = batch
    teacher = student.clone()
    teacher[~mask] = -3.0  # masked junk may differ
    got = kl_distill(student, teacher, mask, tau_student=tau, tau_teacher=tau, reduction="none")
    assert got.abs().max().item() < 1e-12


@SETTINGS
@given(score_pairs(), temperatures, temperatures, arrays(np.float64, (2, 4), elements=st.floats(-50, 50)))
def test_kl_shift_invariant(batch, tau_s, tau_t, shifts):
    student, teacher, mask = batch
    rows = student.shape[0]
    shift_s = torch.from_numpy(shifts[0, :rows]).unsqueeze(1)  # (batch, 1)
    shift_t = torch.from_numpy(shifts[1, :rows]).unsqueeze(1)  # (batch, 1)
    kwargs = dict(tau_student=tau_s, tau_teacher=tau_t, reduction="none")
    before = kl_distill(student, teacher, mask, **kwargs)
    after = kl_distill(student + shift_s, teacher + shift_t, mask, **kwargs)
    assert after.tolist() == pytest.approx(before.tolist(), rel=1e-7, abs=1e-9)


@SETTINGS
@given(score_pairs(), st.floats(-1e6, 1e6), st.floats(-1e6, 1e6))
def test_kl_masked_values_change_nothing(batch, junk_s, junk_t):
    student, teacher, mask = batch
    other_s, other_t = student.clone(), teacher.clone()
    other_s[~mask], other_t[~mask] = junk_s, junk_t
    want = kl_distill(student, teacher, mask, reduction="none").tolist()
    assert kl_distill(other_s, other_t, mask, reduction="none").tolist() == want
    grad_student = student.clone().requires_grad_()
    kl_distill(grad_student, teacher, mask).backward()
    assert (grad_student.grad[~mask] == 0).all() and torch.isfinite(grad_student.grad).all()


# ---------------------------------------------------------------------------------------------
# KL vs sentence-transformers' DistillKLDivLoss, through its forward with a stub model


class FixedEmbeddingBiEncoder(torch.nn.Module):
    """Stands in for a SentenceTransformer: a features dict {"emb": (batch, d)} embeds to itself.

    DistillKLDivLoss.forward embeds each column with model(features)["sentence_embedding"] (the
    stub's dicts carry no input_ids, so ST does not try to merge columns) and scores the query
    column against each candidate column with pairwise_dot_score.
    """

    def forward(self, features):
        return {"sentence_embedding": features["emb"]}


@settings(max_examples=100, deadline=None)
@given(score_pairs(min_real=2), temperatures, temperatures)
def test_kl_matches_sentence_transformers(batch, tau_s, tau_t):
    from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss

    student, teacher, _ = batch
    # ST has no mask: compare on full rows (our mask all True), scores replacing the junk.
    student = torch.nan_to_num(student, nan=0.5)
    teacher = torch.nan_to_num(teacher, posinf=-1.5)
    # Mapping: query embedding = 1 (1-D), candidate j embedding = student[:, j]; their dot product
    # reproduces the student scores. Labels = teacher scores. ST computes
    #   KLDivLoss(batchmean)(log_softmax(s/τ_s), softmax(t/τ_t)) · τ_s²,
    # so theirs = τ_s² · ours.
    table = student.clone().requires_grad_()
    features = [{"emb": torch.ones(student.shape[0], 1, dtype=student.dtype)}]
    features += [{"emb": table[:, j : j + 1]} for j in range(student.shape[1])]
    st_loss = DistillKLDivLoss(FixedEmbeddingBiEncoder(), student_temperature=tau_s, teacher_temperature=tau_t)
    theirs = st_loss(features, teacher)
    mine_student = student.clone().requires_grad_()
    mine = kl_distill(mine_student, teacher, tau_student=tau_s, tau_teacher=tau_t)
    assert (tau_s**2 * mine).item() == pytest.approx(theirs.item(), rel=1e-9, abs=1e-12)
    theirs.backward()
    (tau_s**2 * mine).backward()
    assert torch.allclose(mine_student.grad, table.grad, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Bad input


def test_listmle_bad_shapes_and_dtypes():
    scores = torch.zeros(4, 10)
    perm = torch.arange(10).repeat(4, 1)
    with pytest.raises(ValueError, match=r"expected perm of shape \(4, 10\), got \(4, 9\)"):
        listmle(scores, perm[:, :9])
    with pytest.raises(ValueError, match=r"expected scores of shape \(batch, n_candidates\), got \(10,\)"):
        listmle(scores[0], perm[0])
    with pytest.raises(ValueError, match=r"at least one list and one candidate, got shape \(0, 10\)"):
        listmle(scores[:0], perm[:0])
    with pytest.raises(ValueError, match=r"expected scores of a floating dtype, got torch.int64"):
        listmle(perm, perm)
    with pytest.raises(ValueError, match=r"expected perm of an integer dtype \(torch.long\), got torch.float32"):
        listmle(scores, perm.float())
    with pytest.raises(ValueError, match=r"expected mask of shape \(4, 10\), got \(4, 10, 1\)"):
        listmle(scores, perm, torch.ones(4, 10, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expected mask of dtype torch.bool \(True = real.*\), got torch.int64"):
        listmle(scores, perm, torch.ones(4, 10, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected scores to be a torch.Tensor, got list"):
        listmle([[0.0, 1.0]], perm)
    with pytest.raises(ValueError, match=r"expected reduction in \('mean', 'sum', 'none'\), got 'batchmean'"):
        listmle(scores, perm, reduction="batchmean")


def test_listmle_bad_permutations():
    scores = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"expected perm entries in \[-1, 3\).*got perm\[1, 2\] = 3"):
        listmle(scores, lt([[0, 1, 2], [0, 1, 3]]))
    with pytest.raises(ValueError, match=r"got perm\[0, 0\] = -2"):
        listmle(scores, lt([[-2, 1, 2], [0, 1, 2]]))
    with pytest.raises(ValueError, match=r"real candidate to appear exactly once in perm\[1\], got candidate 0 2 times"):
        listmle(scores, lt([[0, 1, 2], [0, 0, 2]]))
    with pytest.raises(ValueError, match=r"perm\[0\], got candidate 2 0 times"):
        listmle(scores, lt([[0, 1, -1], [0, 1, 2]]))
    # a padded slot pointing at a REAL candidate duplicates it
    mask = bt([[True, True, False], [True, True, True]])
    with pytest.raises(ValueError, match=r"perm\[0\], got candidate 1 2 times"):
        listmle(scores, lt([[0, 1, 1], [0, 1, 2]]), mask)
    # a masked candidate may be named once, twice or never
    assert listmle(scores, lt([[2, 0, 1], [0, 1, 2]]), mask).isfinite()
    assert listmle(scores, lt([[0, 1, -1], [0, 1, 2]]), mask).isfinite()


def test_listmle_nonfinite_real_score():
    with pytest.raises(ValueError, match=r"expected finite scores at real \(unmasked\) .*, got scores\[0, 1\] = nan"):
        listmle(torch.tensor([[0.0, float("nan")]]), lt([[0, 1]]))


def test_kl_bad_input():
    student = torch.zeros(4, 10)
    with pytest.raises(ValueError, match=r"expected teacher of shape \(4, 10\), got \(4, 9\)"):
        kl_distill(student, torch.zeros(4, 9))
    with pytest.raises(ValueError, match=r"expected student of shape \(batch, n_candidates\), got \(2, 4, 10\)"):
        kl_distill(student.expand(2, 4, 10), student.expand(2, 4, 10))
    with pytest.raises(ValueError, match=r"expected student of a floating dtype, got torch.int64"):
        kl_distill(student.long(), student)
    with pytest.raises(ValueError, match=r"expected teacher of a floating dtype, got torch.int32"):
        kl_distill(student, student.int())
    with pytest.raises(ValueError, match=r"expected mask of dtype torch.bool"):
        kl_distill(student, student, student)
    with pytest.raises(ValueError, match=r"expected reduction in \('batchmean', 'sum', 'none'\), got 'mean'"):
        kl_distill(student, student, reduction="mean")
    for bad in (0.0, -1.0, float("inf"), float("nan"), "warm"):
        with pytest.raises(ValueError, match=r"expected tau_student to be a positive finite number"):
            kl_distill(student, student, tau_student=bad)
        with pytest.raises(ValueError, match=r"expected tau_teacher to be a positive finite number"):
            kl_distill(student, student, tau_teacher=bad)
    with pytest.raises(ValueError, match=r"expected finite teacher at real \(unmasked\) .*, got teacher\[3, 9\] = inf"):
        teacher = torch.zeros(4, 10)
        teacher[3, 9] = float("inf")
        kl_distill(student, teacher)


def test_kl_teacher_dtype_follows_student():
    student = t64([[0.0, 0.0]])
    teacher = torch.log(torch.tensor([[1.0, 3.0]], dtype=torch.float32))
    got = kl_distill(student, teacher)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(KL_TWO, rel=1e-6)
