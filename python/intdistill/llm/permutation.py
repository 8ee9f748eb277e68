"""An LLM's listwise ranking text -> a full, valid permutation, with every repair counted.

The prompt shows ``n`` candidates as ``[1]`` .. ``[n]`` in first-stage order. ``parse(text, n).perm``
is 0-based: ``perm[r]`` is the first-stage index of the candidate the LLM ranked ``r``-th. The parser
(in Rust: ``intdistill._core``) reads, in this order of preference:

1. text outside ``<think>…</think>`` blocks only (an unclosed ``<think>`` hides the rest: no answer yet;
   a ``</think>`` with no opener hides everything before it);
2. bracketed ids ``[3] > [1] > [2]``, if there is at least one (all of them, in order);
3. otherwise whichever names more ids (mentions on a tie): ``Passage 3`` / ``Document 3`` / ``doc #3``
   mentions anywhere, or the longest run of bare integers joined only by separators
   (``3 > 1 > 2``, ``3, 1, 2``, ``[3, 1, 2]``, one per line; list numbers such as ``1.`` / ``2)`` at line
   starts are not ids; chatter numbers like ``10 passages`` stay out of the run).

Then: ids ``0`` or ``> n`` (any size) are dropped as *out of range* (invented), repeats are dropped as
*duplicates* (first occurrences keep their order), and candidates never named are appended in
first-stage order as *missing*. The full grammar is the module doc of ``rust/src/permutation.rs``.

Canonical form: ``format_permutation([2, 0, 1]) == "[3] > [1] > [2]"``; parsing it gives the permutation
back with no repairs.

RankGPT's sliding window: ``window_starts(n, window, step)`` lists the windows back to front;
``apply_window(order, start, window_perm)`` merges one window's parsed ranking into the global order.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

from intdistill import _core

__all__ = [
    "ParsedPermutation",
    "RepairSummary",
    "apply_window",
    "format_permutation",
    "parse",
    "parse_many",
    "window_starts",
]


@dataclass(frozen=True)
class ParsedPermutation:
    """One parsed LLM ranking.

    ``perm``: a permutation of ``0..n-1`` (first-stage indices, best first). The counts say what was
    repaired: ``duplicates`` repeated ids dropped, ``out_of_range`` invented ids (``0`` or ``> n``)
    dropped, ``missing`` candidates appended in first-stage order. ``unparseable``: no usable id at all
    (``perm`` is the first-stage order). ``identity``: ``perm == (0, 1, ..., n-1)``.
    """

    perm: tuple[int, ...]
    duplicates: int
    out_of_range: int
    missing: int
    unparseable: bool
    identity: bool

    @property
    def repaired(self) -> bool:
        """Whether anything was dropped or appended."""
        return self.duplicates > 0 or self.out_of_range > 0 or self.missing > 0

    def stats(self) -> dict[str, Union[int, bool]]:
        """The repair stats as a plain dict (for a labels JSONL line)."""
        return {
            "duplicates": self.duplicates,
            "out_of_range": self.out_of_range,
            "missing": self.missing,
            "unparseable": self.unparseable,
            "identity": self.identity,
        }


def _check_n(n: int, what: str = "n") -> int:
    if isinstance(n, bool):
        raise ValueError(f"{what}: expected an int candidate count, got bool")
    try:
        k = operator.index(n)
    except TypeError:
        raise ValueError(f"{what}: expected an int candidate count, got {type(n).__name__}") from None
    if k < 1:
        raise ValueError(f"{what}: expected a candidate count >= 1, got {k}")
    return k


def parse(text: str, n: int) -> ParsedPermutation:
    """Parse one LLM output ranking ``n`` candidates (shown as ``[1]``..``[n]``)."""
    if not isinstance(text, str):
        raise ValueError(f"text: expected str, got {type(text).__name__}")
    perm, st = _core.parse_permutation(text, _check_n(n))
    return ParsedPermutation(tuple(perm), st["duplicates"], st["out_of_range"], st["missing"], st["unparseable"], st["identity"])


def parse_many(texts: Sequence[str], n: Union[int, Sequence[int]]) -> list[ParsedPermutation]:
    """Parse many outputs in parallel (Rust, GIL released). ``n``: one count for all, or one per text.

    For large batches that stay in numpy, call ``intdistill._core.parse_permutations`` directly: it
    returns an int32 ``(len(texts), max n)`` array padded with ``-1`` and one stats array per field.
    """
    if isinstance(texts, str):
        raise ValueError("texts: expected a sequence of str, got a single str")
    texts = list(texts)
    if hasattr(n, "__index__"):
        counts = [_check_n(n)] * len(texts)
    else:
        counts = [_check_n(k, f"n[{i}]") for i, k in enumerate(n)]
        if len(counts) != len(texts):
            raise ValueError(f"n: expected one candidate count per text ({len(texts)}), got {len(counts)}")
    perms, st = _core.parse_permutations(texts, counts)
    rows = perms.tolist()
    columns = [st[k].tolist() for k in ("duplicates", "out_of_range", "missing", "unparseable", "identity")]
    return [
        ParsedPermutation(tuple(rows[i][: counts[i]]), *(c[i] for c in columns))
        for i in range(len(texts))
    ]


def format_permutation(perm: Sequence[int]) -> str:
    """The canonical ranking text ``[a] > [b] > ...`` (1-based) of a permutation of ``0..len-1``."""
    return _core.format_permutation([int(p) for p in perm])


def apply_window(order: Sequence[int], start: int, window_perm: Sequence[int]) -> list[int]:
    """Merge one window's ranking into the global order (RankGPT sliding window).

    With ``w = len(window_perm)``: ``order[start:start+w]`` becomes
    ``[order[start + p] for p in window_perm]``; the rest is unchanged. ``order`` holds candidate
    indices (best first); ``window_perm`` is ``parse(text, w).perm`` for the window's prompt.
    """
    return _core.apply_window([int(o) for o in order], int(start), [int(p) for p in window_perm])


def window_starts(n: int, window: int, step: int) -> list[int]:
    """Back-to-front window starts over ``n`` candidates: ``n-window, n-window-step, ...`` while
    positive, then ``0``; ``[0]`` when ``0 < n <= window``; ``[]`` when ``n == 0``.
    Requires ``window >= 1`` and ``1 <= step <= window`` (RankGPT: window 20, step 10).

    The window at start ``s`` covers ``order[s : min(s + window, n)]``; prompt it with those
    ``w`` candidates as ``[1]..[w]`` and merge with ``apply_window(order, s, parse(text, w).perm)``.
    With a perfect window ranker one pass puts the true top ``window - step`` first, in order."""
    return _core.window_starts(int(n), int(window), int(step))


@dataclass(frozen=True)
class RepairSummary:
    """How much repair a set of parsed rankings needed (for label-quality reports)."""

    count: int  # outputs summarised
    repaired: int  # outputs with any repair (duplicates, invented or missing ids)
    identity: int  # outputs whose permutation is the first-stage order
    unparseable: int  # outputs with no usable id (first-stage order used as is)
    with_duplicates: int  # outputs with >= 1 duplicate dropped
    with_invented: int  # outputs with >= 1 out-of-range id dropped
    with_missing: int  # outputs with >= 1 candidate appended
    duplicates: int  # duplicate ids dropped, in total
    invented: int  # out-of-range ids dropped, in total
    missing: int  # candidates appended, in total

    @classmethod
    def from_parsed(cls, parsed: Iterable[ParsedPermutation]) -> "RepairSummary":
        items = list(parsed)
        return cls(
            count=len(items),
            repaired=sum(p.repaired for p in items),
            identity=sum(p.identity for p in items),
            unparseable=sum(p.unparseable for p in items),
            with_duplicates=sum(p.duplicates > 0 for p in items),
            with_invented=sum(p.out_of_range > 0 for p in items),
            with_missing=sum(p.missing > 0 for p in items),
            duplicates=sum(p.duplicates for p in items),
            invented=sum(p.out_of_range for p in items),
            missing=sum(p.missing for p in items),
        )

    def _share(self, k: int) -> float:
        return k / self.count if self.count else 0.0

    @property
    def repair_rate(self) -> float:
        """Share of outputs with any repair (0.0 for no outputs)."""
        return self._share(self.repaired)

    @property
    def identity_rate(self) -> float:
        """Share of outputs equal to the first-stage order (0.0 for no outputs)."""
        return self._share(self.identity)

    @property
    def mean_missing(self) -> float:
        """Candidates appended per output (0.0 for no outputs)."""
        return self._share(self.missing)

    @property
    def mean_invented(self) -> float:
        """Out-of-range ids dropped per output (0.0 for no outputs)."""
        return self._share(self.invented)

    def __str__(self) -> str:
        return (
            f"{self.count} outputs: {self.repaired} repaired ({self.repair_rate:.1%}), "
            f"{self.identity} identity ({self.identity_rate:.1%}), {self.unparseable} unparseable; "
            f"missing {self.missing} in {self.with_missing} (mean {self.mean_missing:.2f}/output), "
            f"duplicates {self.duplicates} in {self.with_duplicates}, "
            f"invented ids {self.invented} in {self.with_invented}"
        )
