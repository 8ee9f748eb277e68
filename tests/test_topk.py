"""Top-k (rust/src/topk.rs, python/intdistill/topk.py).

Hand values; hypothesis: Rust == the reference in tests/reference_topk.py (a stable argsort prefix).
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
from intdistill import topk as B

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_topk as ref  # noqa: E402

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
