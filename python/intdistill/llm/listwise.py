"""Listwise re-ranking with a black-box chat LLM (RankGPT style).

For ``n`` candidates and a window ``w``:
- ``n <= w``: one call shows all candidates as ``[1] … [n]`` and the answer is parsed into a permutation;
- ``n > w``: RankGPT's back-to-front sliding window: windows start at ``n-w, n-w-step, …, 0``; each call
  re-orders the ``w`` candidates currently at those positions, so strong candidates bubble to the top.

Several passes (``passes > 1``), optionally each on a shuffled presentation order (mapped back to the
candidates afterwards), measure the teacher's position bias and agreement; the label is their Borda
aggregate (mean rank, ties by first-stage order). Only the generated text is used.

:func:`rank_one` ranks one query (its windows one after another, each seeing the previous one's result);
many queries run side by side through :func:`intdistill.llm.items.run_items` (``intdistill label``), so each
finishes, or fails, on its own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from intdistill.llm import permutation as perm_mod
from intdistill.llm import prompts


@dataclass(frozen=True)
class ListwiseConfig:
    template: str = "rankgpt"  # a name in intdistill.llm.prompts.TEMPLATES
    window: int = 20  # candidates shown per call
    step: int = 10  # sliding-window step (n > window only)
    max_words: int | None = 100  # passage truncation in the prompt (words); None keeps whole passages
    passes: int = 1  # independent rankings per query (Borda-aggregated)
    shuffle: bool = False  # present candidates in a seeded random order in every pass (mapped back)
    seed: int = 0  # for shuffling and for the LLM's sampler (sent as `seed`)
    temperature: float = 0.0
    max_tokens: int | None = None  # new tokens per call; default 6 per shown candidate + 16

    def __post_init__(self):
        if self.window < 2:
            raise ValueError(f"window must be >= 2, got {self.window}")
        if not 1 <= self.step <= self.window:
            raise ValueError(f"step must be in 1..window ({self.window}), got {self.step}")
        if self.passes < 1:
            raise ValueError(f"passes must be >= 1, got {self.passes}")
        if self.max_words is not None and self.max_words < 1:
            raise ValueError(f"max_words must be >= 1 or None, got {self.max_words}")
        if self.template not in prompts.TEMPLATES:
            raise ValueError(f"unknown template {self.template!r}; known: {sorted(prompts.TEMPLATES)}")


@dataclass(frozen=True)
class CallRecord:
    """One LLM call: which candidates were shown (indices into the first-stage list, in shown order),
    the raw text, and what the parser made of it (0-based, over the shown positions)."""

    pass_index: int
    start: int
    shown: tuple[int, ...]
    output: str
    parsed: tuple[int, ...]
    duplicates: int
    out_of_range: int
    missing: int
    unparseable: bool
    prompt_tokens: int
    completion_tokens: int
    cached: bool
    latency_s: float

    @property
    def repaired(self) -> bool:
        return bool(self.duplicates or self.out_of_range or self.missing or self.unparseable)


@dataclass(frozen=True)
class ListwiseResult:
    permutation: tuple[int, ...]  # indices into the first-stage candidates, best first
    pass_permutations: tuple[tuple[int, ...], ...]
    calls: tuple[CallRecord, ...] = field(repr=False)

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.calls)

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.calls)


def borda(orders: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """Aggregate several full orders of 0..n-1 by mean rank (Borda); ties keep first-stage order."""
    n = len(orders[0])
    total = [0] * n
    for order in orders:
        if sorted(order) != list(range(n)):
            raise ValueError(f"not a permutation of 0..{n - 1}: {list(order)}")
        for rank, idx in enumerate(order):
            total[idx] += rank
    return tuple(sorted(range(n), key=lambda i: (total[i], i)))


def _pass_order(n: int, cfg: ListwiseConfig, qid: str, p: int) -> list[int]:
    order = list(range(n))
    if cfg.shuffle:
        random.Random(f"{cfg.seed}:{qid}:{p}").shuffle(order)
    return order


def rank_one(client, qid: str, query: str, passages: Sequence[str], cfg: ListwiseConfig = ListwiseConfig()
             ) -> ListwiseResult:
    """Rank one query's ``passages`` (given in first-stage order) with ``client.chat``: every pass, every
    window in turn. Raises the client's ``LLMError`` when a call fails after its retries."""
    template = prompts.TEMPLATES[cfg.template]
    calls: list[CallRecord] = []
    pass_perms: list[tuple[int, ...]] = []
    for p in range(cfg.passes):
        order = _pass_order(len(passages), cfg, qid, p)
        for start in perm_mod.window_starts(len(passages), cfg.window, cfg.step):
            shown = tuple(order[start : start + cfg.window])
            msgs = prompts.build_messages(template, query, [passages[j] for j in shown], max_words=cfg.max_words)
            max_tokens = cfg.max_tokens or (6 * len(shown) + 16)
            ans = client.chat(msgs, temperature=cfg.temperature, max_tokens=max_tokens, seed=cfg.seed)
            parsed = perm_mod.parse(ans.text, len(shown))
            order = list(perm_mod.apply_window(order, start, list(parsed.perm)))
            calls.append(CallRecord(
                pass_index=p, start=start, shown=shown, output=ans.text, parsed=tuple(parsed.perm),
                duplicates=parsed.duplicates, out_of_range=parsed.out_of_range, missing=parsed.missing,
                unparseable=parsed.unparseable, prompt_tokens=ans.prompt_tokens or 0,
                completion_tokens=ans.completion_tokens or 0, cached=ans.cached, latency_s=ans.latency_s,
            ))
        pass_perms.append(tuple(order))
    return ListwiseResult(
        permutation=pass_perms[0] if len(pass_perms) == 1 else borda(pass_perms),
        pass_permutations=tuple(pass_perms),
        calls=tuple(calls),
    )


def rank_queries(
    client,
    items: Sequence[tuple[str, str, Sequence[str]]],
    cfg: ListwiseConfig = ListwiseConfig(),
) -> list[ListwiseResult]:
    """:func:`rank_one` for each ``(qid, query, passages)`` item, in order (one at a time; ``intdistill
    label`` runs many side by side with per-item failures)."""
    return [rank_one(client, qid, query, passages, cfg) for qid, query, passages in items]
