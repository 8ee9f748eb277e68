"""Top-k, padded candidates and length buckets (rust/src/batching.rs, python/intdistill/batching.py).

Hand values for each function; hypothesis: Rust == the references in tests/reference_batching.py (a stable
argsort prefix for top-k, Python loops for padding and bucketing, including the seeded shuffles).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from intdistill import _core
from intdistill import batching as B

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_batching as ref  # noqa: E402

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
INF = float("inf")

# ------------------------------------------------------------------------------------------- top-k


def test_topk_hand_values():
    s = np.array([[0.5, 2.0, -1.0, 2.0, 7.0, 0.5], [0.0, -0.0, -INF, INF, 1.0, 0.0]], dtype=np.float32)
    idx, vals = B.topk(s, 3)
    assert idx.tolist() == [[4, 1, 3], [3, 4, 0]]  # ties (2.0, 2.0) and (0.0, -0.0, 0.0): lower column first
    assert vals.dtype == np.float32 and vals.tolist() == [[7.0, 2.0, 2.0], [INF, 1.0, 0.0]]
    idx, vals = B.topk(s, 3, largest=False)
    assert idx.tolist() == [[2, 0, 5], [2, 0, 1]]
    assert vals.tolist() == [[-1.0, 0.5, 0.5], [-INF, 0.0, 0.0]]
    assert np.signbit(vals[1, 2])  # the value is the input's own -0.0
    # k = n is a full stable sort; 1-D input gives 1-D output; ints become float64.
    assert B.topk([3, 1, 3, 2], 4).idx.tolist() == [0, 2, 3, 1]
    assert B.topk([3, 1, 3, 2], 4).vals.dtype == np.float64
    assert B.topk(np.array([[5.0]]), 1).idx.tolist() == [[0]]
    assert B.topk(np.zeros((0, 4), dtype=np.float32), 2).idx.shape == (0, 2)


def test_topk_errors():
    s = np.array([[1.0, 2.0, 3.0], [4.0, np.nan, np.nan]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"NaN at row 1, column 1"):
        B.topk(s, 1)
    with pytest.raises(ValueError, match=r"NaN at row 1, column 1"):
        _core.topk(s.astype(np.float64), 3, largest=False)
    ok = np.ones((2, 3), dtype=np.float32)
    for k in (0, 4, -1):
        with pytest.raises(ValueError, match=rf"k: expected an int in \[1, 3\].*got {k}"):
            B.topk(ok, k)
        with pytest.raises(ValueError, match=rf"got {k}"):
            _core.topk(ok, k)
    with pytest.raises(ValueError, match="k: .*got bool"):
        B.topk(ok, True)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.topk(np.ones((3, 4), dtype=np.float32)[:, ::2], 1)
    with pytest.raises(ValueError, match="float32 or float64.*int64"):
        _core.topk(np.ones((2, 2), dtype=np.int64), 1)
    with pytest.raises(ValueError, match="shape"):
        B.topk(np.ones((2, 2, 2)), 1)
    with pytest.raises(ValueError, match="dtype"):
        B.topk(np.array([["a"]]), 1)
    # a strided view is copied by the Python layer
    v = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    assert B.topk(v, 1).idx.tolist() == [[1], [1], [1]]


# Few distinct values so that ties (also at the k-th place) are common; ±inf and -0.0 included.
VALUES = st.sampled_from([-INF, -2.5, -1.0, -0.0, 0.0, 0.25, 1.0, 3.0, INF])


@st.composite
def score_matrices(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    nq = draw(st.integers(1, 4))
    n = draw(st.integers(1, 40))
    elements = VALUES if draw(st.booleans()) else st.floats(-1e6, 1e6, width=32)
    s = draw(hnp.arrays(dtype, (nq, n), elements=elements))
    k = draw(st.integers(1, n))
    return s, k


@SETTINGS
@given(score_matrices(), st.booleans())
def test_topk_matches_stable_argsort(case, largest):
    s, k = case
    idx, vals = B.topk(s, k, largest=largest)
    ridx, rvals = ref.topk(s, k, largest)
    np.testing.assert_array_equal(idx, ridx)
    assert vals.dtype == s.dtype
    np.testing.assert_array_equal(vals, rvals)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(300, 3000),
    st.integers(1, 400),
    st.integers(1, 60),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_topk_long_rows_with_ties(n, k, distinct, largest, seed):
    # Long rows force many buffer cuts; some rows ascend so every score enters the buffer.
    k = min(k, n)
    rng = np.random.default_rng(seed)
    s = rng.integers(0, distinct, size=(3, n)).astype(np.float32)
    s[1] = np.arange(n, dtype=np.float32) // 3
    s[2] = -s[1]
    idx, vals = B.topk(s, k, largest=largest)
    ridx, rvals = ref.topk(s, k, largest)
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(vals, rvals)


# ------------------------------------------------------------------------------ padded candidates


def test_pad_candidates_hand_values():
    lists = [[5, 3, 5, 9, 1, 3], [], [7, 2, 8]]
    # row 0: 5 3 [5 dup] [9 excluded] 1 [3 dup] -> 5 3 1 -> cut to 5 3; row 2: 7 [2 excl] 8
    idx, mask, stats = B.pad_candidates(lists, 2, exclude=[[9], [4], [2, 2]])
    assert idx.tolist() == [[5, 3], [-1, -1], [7, 8]]
    assert mask.tolist() == [[True, True], [False, False], [True, True]]
    assert stats == B.PadStats(duplicates=2, excluded=2, truncated=1, short_rows=1)
    idx, mask, stats = B.pad_candidates(lists, pad=0)  # n=None: the longest filtered row (4)
    assert idx.tolist() == [[5, 3, 9, 1], [0, 0, 0, 0], [7, 2, 8, 0]]
    assert mask.sum() == 7
    assert stats == B.PadStats(duplicates=2, excluded=0, truncated=0, short_rows=2)
    assert idx.dtype == np.int64 and mask.dtype == bool
    # 2-D arrays and array rows (e.g. top-k output), with the query's own id excluded.
    mined = np.array([[4, 0, 2], [1, 3, 1]], dtype=np.int32)
    idx, mask, stats = B.pad_candidates(mined, exclude=[np.array([0]), (1,)])
    assert idx.tolist() == [[4, 2], [3, -1]]
    assert stats == B.PadStats(duplicates=0, excluded=3, truncated=0, short_rows=1)
    assert B.pad_candidates([np.arange(3), (2, 1)], 0).idx.shape == (2, 0)
    idx, mask, stats = B.pad_candidates([], None)
    assert idx.shape == (0, 0) and stats == B.PadStats(0, 0, 0, 0)


def test_pad_candidates_errors():
    with pytest.raises(ValueError, match=r"lists\[1\]\[2\]: expected a candidate id >= 0, got -3"):
        B.pad_candidates([[1], [2, 4, -3]], 3)
    with pytest.raises(ValueError, match=r"lists\[0\]\[1\]: expected an int id \(int64\), got 'x' \(str\)"):
        B.pad_candidates([[1, "x"]], 3)
    with pytest.raises(ValueError, match=r"lists\[0\]: expected a list of ints, got str"):
        _core.pad_candidates(["12"], 3)
    with pytest.raises(ValueError, match=r"exclude: expected one row per candidate list \(2\), got 1"):
        B.pad_candidates([[1], [2]], 1, exclude=[[1]])
    with pytest.raises(ValueError, match=r"n: expected an int in \[0, .*got -1"):
        B.pad_candidates([[1]], -1)
    with pytest.raises(ValueError, match=r"n: expected an int >= 0 or None, got -1"):
        _core.pad_candidates([[1]], -1)
    with pytest.raises(ValueError, match=r"pad: .*got bool"):
        B.pad_candidates([[1]], 1, pad=False)
    with pytest.raises(ValueError, match="2-D integer array"):
        B.pad_candidates(np.ones((2, 2)), 1)


ID_ROWS = st.lists(st.lists(st.integers(0, 12), max_size=15), max_size=8)


@SETTINGS
@given(ID_ROWS, st.data(), st.one_of(st.none(), st.integers(0, 10)), st.integers(-5, 5), st.booleans())
def test_pad_candidates_matches_reference(lists, data, n, pad, as_arrays):
    exclude = data.draw(st.one_of(st.none(), st.lists(st.lists(st.integers(0, 12), max_size=4), min_size=len(lists), max_size=len(lists))))
    rows = [np.array(r, dtype=np.int64) for r in lists] if as_arrays else lists
    idx, mask, stats = B.pad_candidates(rows, n, exclude=exclude, pad=pad)
    ridx, rmask, rstats = ref.pad_candidates(lists, n, exclude, pad)
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_array_equal(mask, rmask)
    assert stats == B.PadStats(**rstats)


# --------------------------------------------------------------------------------- length buckets


def test_length_buckets_hand_values():
    lengths = np.array([5, 1, 3, 3, 8, 2, 20])
    # sorted lengths 1 2 3 3 5 8 20 (indices 1 5 2 3 0 4 6), budget 10:
    # [1 2 3] costs 3*3=9, +3 would be 4*3=12; [3 5] 2*5=10, +8 would be 16; [8]; [20] alone (over budget)
    batches = B.length_buckets(lengths, 10)
    assert [b.tolist() for b in batches] == [[1, 5, 2], [3, 0], [4], [6]]
    assert all(b.dtype == np.int64 for b in batches)
    assert B.padding_stats(lengths, batches) == (42, 9 + 10 + 8 + 20)
    assert [b.tolist() for b in B.length_buckets(lengths, 10, max_batch=2)] == [[1, 5], [2, 3], [0], [4], [6]]
    # Seeded, traced by hand: SplitMix64(1) draws 0x910a2dec89025cc1, ... The equal run [2, 3] shuffles with
    # below(2) = 1 (no swap); batch order [a b c d] with below(4)=2, below(3)=2, below(2)=0 -> [b a d c].
    seeded = [b.tolist() for b in B.length_buckets(lengths, 10, shuffle_seed=1)]
    assert seeded == [[3, 0], [1, 5, 2], [6], [4]]
    stats = B.padding_stats(lengths, B.length_buckets(lengths, 10, shuffle_seed=1))
    assert stats == (42, 47) and stats.padding == 5 and stats.efficiency == pytest.approx(42 / 47)
    # random batching of the same lengths in pairs, for scale: (5,1) (3,3) (8,2) (20) -> 10+6+16+20 = 52
    assert B.padding_stats(lengths, [[0, 1], [2, 3], [4, 5], [6]]) == (42, 52)
    assert B.length_buckets([], 5) == []
    assert [b.tolist() for b in B.length_buckets([0, 0, 0], 1)] == [[0, 1, 2]]
    assert B.padding_stats([4], [[]]) == (0, 0) and B.padding_stats([], []).efficiency == 1.0


def test_length_buckets_errors():
    with pytest.raises(ValueError, match=r"lengths\[1\]: expected a token count >= 0, got -2"):
        B.length_buckets([3, -2], 10)
    with pytest.raises(ValueError, match=r"lengths\[1\]: expected >= 0, got -2"):
        _core.length_buckets(np.array([3, -2]), 10)
    with pytest.raises(ValueError, match="lengths: expected a 1-D int64 numpy array, got list"):
        _core.length_buckets([3, 2], 10)
    with pytest.raises(ValueError, match="integer token counts, got dtype float64"):
        B.length_buckets([1.5], 10)
    with pytest.raises(ValueError, match=r"max_tokens: .*got 0"):
        B.length_buckets([1], 0)
    with pytest.raises(ValueError, match=r"max_tokens: expected an int >= 1, got 0"):
        _core.length_buckets(np.array([1]), 0)
    with pytest.raises(ValueError, match=r"max_batch: .*got 0"):
        B.length_buckets([1], 5, max_batch=0)
    with pytest.raises(ValueError, match=r"shuffle_seed: .*got -1"):
        B.length_buckets([1], 5, shuffle_seed=-1)
    with pytest.raises(ValueError, match=r"batches\[1\]\[0\]: expected an index in \[0, 2\), got 2"):
        B.padding_stats([1, 2], [[0], [2]])


@SETTINGS
@given(
    st.lists(st.integers(0, 40), max_size=60),
    st.integers(1, 150),
    st.one_of(st.none(), st.integers(1, 8)),
    st.one_of(st.none(), st.integers(0, 2**64 - 1)),
)
def test_length_buckets_matches_reference(lengths, max_tokens, max_batch, seed):
    batches = B.length_buckets(lengths, max_tokens, max_batch=max_batch, shuffle_seed=seed)
    expected = ref.length_buckets(lengths, max_tokens, max_batch, seed)
    assert [b.tolist() for b in batches] == expected
    # a partition of all indices
    flat = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    # the budget holds, except for a lone example over it
    lens = np.asarray(lengths, dtype=np.int64)
    for b in batches:
        assert len(b) >= 1 and (max_batch is None or len(b) <= max_batch)
        assert len(b) * lens[b].max() <= max_tokens or (len(b) == 1 and lens[b[0]] > max_tokens)
    # deterministic, and the seed moves examples without changing the padding
    again = B.length_buckets(lengths, max_tokens, max_batch=max_batch, shuffle_seed=seed)
    assert [b.tolist() for b in again] == [b.tolist() for b in batches]
    stats = B.padding_stats(lengths, batches)
    assert stats == ref.padding_stats(lengths, expected)
    assert stats == B.padding_stats(lengths, B.length_buckets(lengths, max_tokens, max_batch=max_batch))


@SETTINGS
@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=30), st.data())
def test_padding_stats_matches_reference(lengths, data):
    batches = data.draw(st.lists(st.lists(st.integers(0, len(lengths) - 1), max_size=6), max_size=6))
    assert B.padding_stats(lengths, batches) == ref.padding_stats(lengths, batches)


def test_splitmix_reference_stream():
    # Published first outputs of SplitMix64 for seed 0 (also checked in the cargo tests).
    r = ref.SplitMix64(0)
    assert [r.next_u64(), r.next_u64()] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]
    r = ref.SplitMix64(1)
    assert [r.next_u64(), r.below(4), r.below(3), r.below(2)] == [0x910A2DEC89025CC1, 2, 2, 0]
