"""Significance: is B better than A over the same queries, and the one rule that says so.

:func:`paired_test` compares per-query values of two runs (a two-sided paired randomization test, with the
paired t-test beside it); :func:`verdict` turns a change and its p-value into "better", "worse" or "no
significant difference" at :data:`ALPHA`. Everything that judges one order against another uses this one
rule: the teacher gate and the ranker check (:class:`intdistill.gate.TeacherReport`), train-ranker's dev
warning, the pipeline's test comparison and the report's flags. :func:`compare` runs :func:`paired_test` for
several runs against a baseline on every measure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from intdistill.metrics import Evaluation

ALPHA = 0.05  # a change is significant when its two-sided p-value is below this
BETTER, WORSE, SAME = "better", "worse", "no significant difference"


def verdict(delta: float, p_value: float, alpha: float = ALPHA) -> str:
    """"better" / "worse" when ``p_value < alpha`` (by the sign of ``delta``, new minus old), else "no
    significant difference". A zero change is never significant."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: expected a number between 0 and 1, got {alpha!r}")
    if p_value < alpha and delta != 0:
        return BETTER if delta > 0 else WORSE
    return SAME


class PairedTest(NamedTuple):
    """Paired comparison of per-query values ``a`` (e.g. before) and ``b`` (after).

    ``delta = mean_b - mean_a``; ``p_value``: two-sided paired randomization (sign-flip) test;
    ``t_p_value``: two-sided paired t-test (NaN when n < 2); ``n``: number of queries;
    ``exact``: True when the randomization test enumerated all 2**n sign patterns.
    """

    mean_a: float
    mean_b: float
    delta: float
    p_value: float
    t_p_value: float
    n: int
    exact: bool

    def verdict(self, alpha: float = ALPHA) -> str:
        """:func:`verdict` of this change: "better", "worse" or "no significant difference"."""
        return verdict(self.delta, self.p_value, alpha)


def paired_test(
    a: Mapping[str, float], b: Mapping[str, float], n_resamples: int = 10000, seed: int = 0
) -> PairedTest:
    """Paired two-sided tests of ``mean(b) - mean(a)`` over the same queries.

    Randomization test on the differences ``d = b - a``: under H0 each ``d_i`` is as likely to have
    the opposite sign, so ``p = P(|mean(s * d)| >= |mean(d)|)`` over random signs ``s``. When
    ``2**n <= n_resamples`` all sign patterns are enumerated (exact p); otherwise ``n_resamples``
    random patterns (seeded) give ``p = (hits + 1) / (n_resamples + 1)``. The t-test uses
    scipy.stats when installed, else the same Student-t tail computed here. ``a`` and ``b`` must
    score the same query ids.
    """
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1, got {n_resamples!r}")
    only_a, only_b = set(a) - set(b), set(b) - set(a)
    if only_a or only_b:
        raise ValueError(
            f"a and b must score the same queries; {len(only_a)} only in a (e.g. {sorted(only_a)[:3]}), "
            f"{len(only_b)} only in b (e.g. {sorted(only_b)[:3]})"
        )
    if not a:
        raise ValueError("a and b are empty: nothing to compare")
    qids = list(a)
    va = np.array([a[q] for q in qids], dtype=np.float64)
    vb = np.array([b[q] for q in qids], dtype=np.float64)
    if not (np.isfinite(va).all() and np.isfinite(vb).all()):
        raise ValueError("per-query values must be finite numbers, got NaN or infinity")
    d = vb - va
    n = len(d)
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)
    exact = n < 63 and 2**n <= n_resamples
    if exact:
        patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        stats = np.abs((1 - 2 * patterns) @ d) / n
        p = float(np.count_nonzero(stats >= observed - tol)) / 2**n
    else:
        rng = np.random.default_rng(seed)
        hits, left = 0, int(n_resamples)
        chunk = max(1, (1 << 22) // n)
        while left:
            m = min(chunk, left)
            signs = 1 - 2 * rng.integers(0, 2, size=(m, n), dtype=np.int8).astype(np.float64)
            hits += int(np.count_nonzero(np.abs(signs @ d) / n >= observed - tol))
            left -= m
        p = (hits + 1) / (n_resamples + 1)
    return PairedTest(
        mean_a=float(va.mean()),
        mean_b=float(vb.mean()),
        delta=float(d.mean()),
        p_value=p,
        t_p_value=_paired_t_p(d),
        n=n,
        exact=exact,
    )


def _paired_t_p(d: np.ndarray) -> float:
    """Two-sided p of the paired t-test on differences ``d``: ``t = mean / (sd / sqrt(n))``, df = n - 1.
    Zero spread: p = 1 if the mean is 0, else 0. NaN when n < 2."""
    n = len(d)
    if n < 2:
        return float("nan")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    t = mean / (sd / math.sqrt(n))
    try:
        from scipy import stats
    except ImportError:
        return _student_t_two_sided(t, n - 1)
    return float(2.0 * stats.t.sf(abs(t), n - 1))


def _student_t_two_sided(t: float, df: int) -> float:
    """``P(|T| >= |t|)`` for Student's t with ``df`` degrees of freedom: ``I_x(df/2, 1/2)``,
    ``x = df / (df + t^2)`` (regularized incomplete beta, Numerical Recipes' continued fraction)."""
    x = df / (df + t * t)
    return _betainc(df / 2.0, 0.5, x)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta ``I_x(a, b)`` by Lentz's continued fraction."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny, eps = 1e-300, 1e-15
    c, dd = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    dd = 1.0 / (dd if abs(dd) > tiny else tiny)
    h = dd
    for m in range(1, 10000):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            dd = 1.0 + num * dd
            dd = 1.0 / (dd if abs(dd) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= dd * c
        if abs(dd * c - 1.0) < eps:
            break
    return math.exp(ln_front) * h / a


@dataclass
class Comparison:
    """Several evaluations against one of them (the baseline), from :func:`compare`.

    ``means[run][measure]``: each run's mean; ``tests[run][measure]``: :class:`PairedTest` of the run against
    the baseline (``delta = run - baseline``) for every run but the baseline.
    """

    baseline: str
    measures: tuple[str, ...]
    means: dict[str, dict[str, float]]
    tests: dict[str, dict[str, PairedTest]]

    def rows(self, digits: int = 4) -> list[list[str]]:
        """Header and one row per run: the baseline's means, then each run's mean with its change and the
        randomization test's p-value, e.g. ``0.6712 (+0.0261, p=0.003)``."""
        out = [["run"] + list(self.measures)]
        for run, means in self.means.items():
            row = [run]
            for m in self.measures:
                cell = f"{means[m]:.{digits}f}"
                if run in self.tests:
                    t = self.tests[run][m]
                    cell += f" ({t.delta:+.{digits}f}, p={t.p_value:.3g})"
                row.append(cell)
            out.append(row)
        return out

    def to_markdown(self, digits: int = 4) -> str:
        rows = self.rows(digits)
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * len(rows[0])]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "measures": list(self.measures), "means": self.means,
                "tests": {r: {m: t._asdict() for m, t in ts.items()} for r, ts in self.tests.items()}}


def compare(evaluations: Mapping[str, Evaluation], baseline: str | None = None, *, n_resamples: int = 10000,
            seed: int = 0) -> Comparison:
    """Compare named evaluations (same measures, same queries) with ``baseline`` (default: the first) by
    :func:`paired_test` on every measure. Raises ValueError naming the run whose measures or queries differ."""
    if not evaluations:
        raise ValueError("expected at least one evaluation to compare, got none")
    names = list(evaluations)
    baseline = names[0] if baseline is None else baseline
    if baseline not in evaluations:
        raise ValueError(f"baseline: expected one of {names}, got {baseline!r}")
    base = evaluations[baseline]
    measures = base.measures
    for name, ev in evaluations.items():
        if ev.measures != measures:
            raise ValueError(f"run {name!r}: expected the measures {list(measures)}, got {list(ev.measures)}")
        if set(ev.per_query) != set(base.per_query):
            raise ValueError(f"run {name!r}: expected the same {len(base.per_query)} scored queries as the baseline "
                             f"{baseline!r}, got {len(ev.per_query)} (use the same qrels or queries file)")
    tests = {}
    for name, ev in evaluations.items():
        if name == baseline:
            continue
        tests[name] = {m: paired_test({q: v[m] for q, v in base.per_query.items() if m in v},
                                      {q: v[m] for q, v in ev.per_query.items() if m in v},
                                      n_resamples=n_resamples, seed=seed)
                       for m in measures}
    return Comparison(baseline, measures, {n: dict(e.mean) for n, e in evaluations.items()}, tests)
