"""The ranker kinds (which towers train, whether a cross-encoder adds to the first stage), without torch:
the command line and the configuration checks read them at startup."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SCALE = 20.0  # 1 / 0.05: MiniLM cosines as logits (the temperature stage 2 uses for the student too)
BI_MODES = ("none", "frozen", "query", "shared")


@dataclass(frozen=True)
class RankerKind:
    """A named composite: which towers of the bi-encoder part train, and whether a cross-encoder adds to it."""

    bi: str  # one of BI_MODES
    cross: bool  # a cross-encoder residual f
    about: str  # one line for --help and the README


#: The ranker kinds, by name. ``query-tower`` is the default (README, "Which ranker", has the measurements).
KINDS: dict[str, RankerKind] = {
    "query-tower": RankerKind("query", False, "trainable query encoder over the frozen first stage's passage "
                                              "embeddings (cheap: a step encodes only queries)"),
    "twin": RankerKind("shared", False, "a trainable copy of the first stage, both sides"),
    "anchored-cross": RankerKind("frozen", True, "frozen first stage + a cross-encoder whose head starts at 0"),
    "query-tower+cross": RankerKind("query", True, "query-tower + a cross-encoder whose head starts at 0"),
    "cross": RankerKind("none", True, "a plain cross-encoder with a new head (the paper's; does NOT start at the "
                                      "first stage)"),
}
DEFAULT_KIND = "query-tower"


def kind_of(bi: str, cross: bool) -> str:
    return next((k for k, v in KINDS.items() if (v.bi, v.cross) == (bi, cross)), f"{bi}+{'cross' if cross else ''}")
