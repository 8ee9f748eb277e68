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
from typing import Sequence, Union

from intdistill import _core

__all__ = [
    "ParsedPermutation",
    "apply_window",
    "format_permutation",
    "parse",
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
