"""Listwise ranking prompts as data.

A ``PromptTemplate`` is a frozen record: a system message, a user message template and the format of
a passage id. ``build_messages`` fills it in:

- each passage becomes one line ``id_format.format(i=i) + " " + passage`` (i = 1..n, in the order given),
  its whitespace collapsed to single spaces (a passage is one line), optionally cut to its first
  ``max_words`` words or first ``max_tokens`` tokens;
- the lines are joined with ``"\\n"`` into ``{passages}``; ``{query}`` and ``{n}`` (the number of passages)
  are filled in the user template (``str.format`` fields; no other fields are allowed).

``template_hash(t)`` (first 12 hex digits of a sha256 over the defining text: system, user, id format)
is recorded with every label, so a label can be traced to the exact prompt that produced it.

Templates (``TEMPLATES``; look one up with ``get_template(name)``):
- ``scifact-shared``: the prompt of the shared SciFact labels (``../shared/data/scifact-llm-labels``),
  verbatim; with 10 passages and ``max_words=60`` it reproduces those prompts exactly.
- ``rankgpt``: RankGPT-style (Sun et al., 2023, "Is ChatGPT Good at Search?"): numbered passages, then
  "rank ... in the form [2] > [1] > [3]".
- ``compact``: the fewest instruction tokens, for small context windows and small models.
All three ask for the same answer format (``[2] > [1] > [3]``), which the permutation parser reads.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from typing import Callable, Sequence

_ALLOWED_FIELDS = {"query", "passages", "n"}


@dataclass(frozen=True)
class PromptTemplate:
    """A listwise ranking prompt.

    ``name``: registry name. ``system``: system message (``""``: none is sent). ``user``: user message
    template with the fields ``{query}``, ``{passages}``, ``{n}`` (write literal braces as ``{{ }}``).
    ``id_format``: how passage ``i`` (1-based) is marked, with the field ``{i}``. ``description``: one line.
    """

    name: str
    system: str
    user: str
    id_format: str = "[{i}]"
    description: str = ""

    def __post_init__(self):
        for label, text, allowed, required in (
            ("user", self.user, _ALLOWED_FIELDS, {"passages"}),
            ("id_format", self.id_format, {"i"}, {"i"}),
        ):
            fields = _fields(text)
            bad = fields - allowed
            if bad:
                raise ValueError(f"PromptTemplate {self.name!r}: {label} has unknown field(s) {sorted(bad)}; "
                                 f"expected some of {sorted(allowed)}")
            missing = required - fields
            if missing:
                raise ValueError(f"PromptTemplate {self.name!r}: {label} lacks the field(s) {sorted(missing)}")
        if "{" in self.system or "}" in self.system:
            # The system message is sent as is; braces there are most likely a template mistake.
            raise ValueError(f"PromptTemplate {self.name!r}: system message must not contain braces, got {self.system!r}")


def _fields(text: str) -> set[str]:
    try:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as e:
        raise ValueError(f"bad template text {text!r:.120}: {e}") from None


def template_hash(template: PromptTemplate) -> str:
    """First 12 hex digits of sha256 over the canonical JSON of (system, user, id_format); the name and
    description are not part of it (renaming a template does not change its labels' hash)."""
    doc = {"system": template.system, "user": template.user, "id_format": template.id_format}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


SCIFACT_SHARED = PromptTemplate(
    name="scifact-shared",
    system="You are an expert search assistant that ranks passages by relevance to a query.",
    user=(
        "Below are {n} passages, each marked with a number in brackets. Rank them by how relevant they are to "
        "the query.\nQuery: {query}\n\n{passages}\n\nQuery: {query}\nList all {n} passage numbers from most to "
        "least relevant, in the form [2] > [1] > [3]. Answer with the ranking only."
    ),
    description="the prompt of the shared SciFact labels (qwen2.5-coder-1.5b, 10 passages, 60 words each)",
)

RANKGPT = PromptTemplate(
    name="rankgpt",
    system="You are RankGPT, an intelligent assistant that ranks passages by their relevance to a search query.",
    user=(
        "I will give you {n} passages, each marked by a numerical identifier in brackets.\n"
        "Search query: {query}\n\n{passages}\n\n"
        "Search query: {query}\n"
        "Rank the {n} passages above by their relevance to the search query, most relevant first. "
        "Use every identifier exactly once and answer in the form [2] > [1] > [3]. "
        "Reply with the ranking only, without any explanation."
    ),
    description="RankGPT-style listwise prompt (query before and after the passages)",
)

COMPACT = PromptTemplate(
    name="compact",
    system="",
    user="Query: {query}\n\n{passages}\n\nRank the {n} passages by relevance to the query. Answer only like [2] > [1] > [3].",
    description="shortest instructions, no system message (small models, small context windows)",
)

TEMPLATES: dict[str, PromptTemplate] = {t.name: t for t in (SCIFACT_SHARED, RANKGPT, COMPACT)}


def get_template(name: str) -> PromptTemplate:
    """The registered template called ``name``; ``ValueError`` listing the registered names otherwise."""
    try:
        return TEMPLATES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown prompt template {name!r}; expected one of {sorted(TEMPLATES)}") from None


def truncate_words(text: str, max_words: int | None) -> str:
    """``text`` with whitespace collapsed to single spaces, cut to its first ``max_words`` words."""
    words = text.split()
    if max_words is not None:
        words = words[:max_words]
    return " ".join(words)


def truncate_tokens(text: str, max_tokens: int, tokenizer: Callable[[str], Sequence[tuple[int, int]]]) -> str:
    """``text`` cut after its ``max_tokens``-th token. ``tokenizer(text)`` gives each token's character
    span ``(start, end)`` (see ``hf_token_spans``); the cut keeps ``text[:end of token max_tokens]``."""
    spans = list(tokenizer(text))
    if len(spans) <= max_tokens:
        return text
    end = spans[max_tokens - 1][1]
    return text[:end].rstrip()


def hf_token_spans(tokenizer) -> Callable[[str], list[tuple[int, int]]]:
    """Adapt a Hugging Face *fast* tokenizer to the span callable ``truncate_tokens`` takes."""

    def spans(text: str) -> list[tuple[int, int]]:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [tuple(s) for s in enc["offset_mapping"]]

    return spans


def build_messages(
    template: PromptTemplate | str,
    query: str,
    passages: Sequence[str],
    *,
    max_words: int | None = None,
    max_tokens: int | None = None,
    tokenizer: Callable[[str], Sequence[tuple[int, int]]] | None = None,
) -> list[dict]:
    """Chat messages asking to rank ``passages`` (in the given order, ids 1..n) for ``query``.

    ``template``: a ``PromptTemplate`` or a registered name. Passages are cut to ``max_words`` words, or
    to ``max_tokens`` tokens of ``tokenizer`` (a callable text -> token spans, e.g. ``hf_token_spans(tok)``);
    not both. Returns ``[{"role": "system", ...}, {"role": "user", ...}]`` (no system message when the
    template's is empty).
    """
    if isinstance(template, str):
        template = get_template(template)
    if not isinstance(template, PromptTemplate):
        raise TypeError(f"template: expected a PromptTemplate or a template name, got {type(template).__name__}")
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"query: expected a non-empty str, got {query!r}")
    if isinstance(passages, str) or not passages:
        raise ValueError(f"passages: expected a non-empty list of str, got {passages!r:.120}")
    if max_words is not None and max_tokens is not None:
        raise ValueError(f"give max_words or max_tokens, not both (got {max_words} and {max_tokens})")
    for name, v in (("max_words", max_words), ("max_tokens", max_tokens)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name}: expected an int >= 1 or None, got {v!r}")
    if max_tokens is not None and tokenizer is None:
        raise ValueError("max_tokens needs a tokenizer (a callable text -> token spans, e.g. hf_token_spans(tok))")

    lines = []
    for i, p in enumerate(passages, start=1):
        if not isinstance(p, str):
            raise ValueError(f"passages[{i - 1}]: expected a str, got {type(p).__name__}")
        if max_tokens is not None:
            p = truncate_tokens(p, max_tokens, tokenizer)
        lines.append(f"{template.id_format.format(i=i)} {truncate_words(p, max_words)}")
    user = template.user.format(query=query, passages="\n".join(lines), n=len(passages))
    messages = [{"role": "system", "content": template.system}] if template.system else []
    messages.append({"role": "user", "content": user})
    return messages
