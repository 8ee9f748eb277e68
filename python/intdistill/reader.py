"""The LLM reader of retrieval-augmented QA: its prompts, its configuration and the parsing of its answer.

Reader prompt: a ``PromptTemplate`` (``intdistill.llm.prompts``) from ``READER_TEMPLATES``, filled in by
``prompts.build_messages``: the retrieved passages in rank order, one line each, ``[i] title: text`` (whitespace
collapsed, optionally cut to ``max_words`` words), then the question, asking for a few words taken from the
passages. ``template_hash`` of the template is recorded with every prediction.

Answer parsing (``parse_answer``): the reader's text is cleaned to a short span, see its docstring.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from intdistill.data import Passage
from intdistill.llm.prompts import PromptTemplate, build_messages, template_hash

# ---------------------------------------------------------------------------------------------- prompts

SHORT_ANSWER = PromptTemplate(
    name="short-answer",
    system="You answer questions from the passages you are given. You reply with a short answer only.",
    user=(
        "Passages:\n{passages}\n\n"
        "Question: {query}\n"
        "Answer with a few words taken from the passages, not a sentence. "
        "If the passages do not say, give your best guess in a few words. Reply with the answer only."
    ),
    description="numbered passages, then the question; asks for a short span from the passages (default)",
)

COMPACT_READER = PromptTemplate(
    name="compact",
    system="",
    user="{passages}\n\nQuestion: {query}\nAnswer with a few words from the passages only.",
    description="shortest instructions, no system message (small models, small context windows)",
)

READER_TEMPLATES: dict[str, PromptTemplate] = {t.name: t for t in (SHORT_ANSWER, COMPACT_READER)}


def get_reader_template(name: str) -> PromptTemplate:
    """The registered reader template called ``name``; ``ValueError`` listing the registered names otherwise."""
    try:
        return READER_TEMPLATES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown reader template {name!r}; expected one of {sorted(READER_TEMPLATES)}") from None


def passage_reader_text(p: Passage) -> str:
    """How a passage is shown to the reader: ``title: text`` (just ``text`` without a title)."""
    return f"{p.title}: {p.text}" if p.title else p.text


@dataclass(frozen=True)
class ReaderConfig:
    """How the reader is asked. Every field is part of a predictions file's identity (``RUN_IDENTITY``)."""

    template: str = SHORT_ANSWER.name  # a name in READER_TEMPLATES
    max_words: int | None = None  # passage words shown to the reader (None: whole passages)
    max_tokens: int = 32  # new tokens per answer
    temperature: float = 0.0
    seed: int = 0  # sent to the endpoint as `seed`

    def __post_init__(self):
        get_reader_template(self.template)
        for name, low in (("max_tokens", 1), ("seed", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
        v = self.max_words
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"max_words: expected an int >= 1 or None, got {v!r}")
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 2:
            raise ValueError(f"temperature: expected a number in [0, 2], got {t!r}")

    @property
    def prompt_hash(self) -> str:
        return template_hash(get_reader_template(self.template))

    def decoding(self) -> dict:
        return {"temperature": float(self.temperature), "max_tokens": self.max_tokens, "seed": self.seed}


def reader_messages(question: str, passages: Sequence[Passage], config: ReaderConfig | None = None) -> list[dict]:
    """Chat messages asking the reader to answer ``question`` from ``passages`` (shown in the given order)."""
    config = config or ReaderConfig()
    return build_messages(get_reader_template(config.template), question,
                          [passage_reader_text(p) for p in passages], max_words=config.max_words)


# ---------------------------------------------------------------------------------------------- parsing

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_PREFIX = re.compile(r"^\s*(?:\*\*|__)?\s*(?:(?:final|short)\s+)?(?:answer|a)\s*(?:\*\*|__)?\s*[:：]\s*(?:\*\*|__)?",
                     re.I)
_CITATIONS = re.compile(r"(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])+$")
_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb"}
_EMPHASIS = ("**", "__")


def _unquote(s: str) -> str:
    for mark in _EMPHASIS:
        if len(s) > 2 * len(mark) and s.startswith(mark) and s.endswith(mark):
            s = s[len(mark):-len(mark)].strip()
    if len(s) >= 2 and s[0] in _QUOTES and s[-1] == _QUOTES[s[0]]:
        s = s[1:-1].strip()
    return s


def parse_answer(text: str) -> str:
    """A reader's text cleaned to the answer span, in this order:

    1. ``<think>...</think>`` blocks are dropped (an unclosed ``<think>`` leaves nothing: no answer came);
    2. a leading ``Answer:`` / ``A:`` / ``Final answer:`` / ``Short answer:`` (any case, optionally in ``**``) is dropped;
    3. the first non-empty line is kept, stripped;
    4. trailing passage citations such as ``[1]`` or ``[1, 3]`` are dropped (with a period before or after them);
    5. a trailing period is dropped, then surrounding ``**``/``__`` and one pair of matching quotes
       (``"`` ``'`` `````, curly quotes, guillemets), then a trailing period again (an ellipsis stays).

    ``""`` when nothing is left (scored 0, as the official SQuAD script scores a missing answer).
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    s = _THINK.sub("", text)
    if re.search(r"<think>", s, re.I):
        return ""
    s = _PREFIX.sub("", s.strip(), count=1)
    s = next((line.strip() for line in s.splitlines() if line.strip()), "")
    s = _drop_period(_CITATIONS.sub("", _drop_period(s)).strip())
    return _drop_period(_unquote(s))


def _drop_period(s: str) -> str:
    """``s`` without one trailing period (an ellipsis ``...`` stays)."""
    return s[:-1].rstrip() if s.endswith(".") and not s.endswith("..") else s
