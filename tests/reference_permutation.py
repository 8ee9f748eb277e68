"""Pure-Python reference for ``rust/src/permutation.rs`` (same grammar, written with ``re``).

Slow and plain on purpose: the tests check the Rust core against it on generated LLM-like outputs
and on random text. The grammar is documented in the module doc of ``rust/src/permutation.rs``.
"""

from __future__ import annotations

import re

WS = " \t\n\r\x0b\x0c"
_WS = "[ \\t\\n\\r\\x0b\\x0c]"
SEP = WS + ">,;|-=\"'[]()*`#" + "\u2192\u00bb\u226b\u227b"
_FLAGS = re.ASCII | re.IGNORECASE

_TAG = re.compile(r"<(/?)think(?:ing)?>", _FLAGS)
_BRACKET = re.compile(rf"\[{_WS}*([0-9]+){_WS}*\]")
_MENTION = re.compile(rf"(?<![A-Za-z0-9_])(?:passage|document|doc){_WS}*#?{_WS}*([0-9]+)", _FLAGS)
_LIST_NUMBER = re.compile(r"^[ \t]*[0-9]+[.)](?=[ \t])", re.MULTILINE)
_TOKEN = re.compile(r"(?<![A-Za-z_0-9])[0-9]+(?![A-Za-z_0-9])")
_GAP = re.compile(
    "(?:[" + re.escape(SEP) + "]|\\.(?=" + _WS + ")|passages?|documents?|docs?)*",
    _FLAGS,
)


def visible_text(text: str) -> str:
    """Text outside ``<think>``/``<thinking>`` blocks, kept pieces joined with ``\\n``."""
    kept: list[str] = []
    inside = False
    seg_start = 0
    any_tag = False
    for m in _TAG.finditer(text):
        any_tag = True
        closer = m.group(1) == "/"
        if not inside and not closer:
            kept.append(text[seg_start : m.start()])
            inside = True
        elif inside and closer:
            inside = False
            seg_start = m.end()
        elif not inside and closer:
            kept = []
            seg_start = m.end()
    if not any_tag:
        return text
    if not inside:
        kept.append(text[seg_start:])
    return "\n".join(kept)


def _value(digits: str) -> int:
    """The id's value, capped at 2**64 - 1 like the Rust core (int() refuses > 4300 digits)."""
    return min(int(digits), 2**64 - 1) if len(digits.lstrip("0")) <= 20 else 2**64 - 1


def extract_ids(text: str) -> tuple[str, list[int]]:
    """(reading, 1-based ids): reading is "bracket", "mention", "sequence" or "none"."""
    v = visible_text(text)
    brackets = [_value(m.group(1)) for m in _BRACKET.finditer(v)]
    if brackets:
        return "bracket", brackets
    mentions = [_value(m.group(1)) for m in _MENTION.finditer(v)]
    blanked = _LIST_NUMBER.sub(lambda m: " " * len(m.group(0)), v)
    tokens = list(_TOKEN.finditer(blanked))
    best: list[re.Match[str]] = []
    run: list[re.Match[str]] = []
    for tok in tokens:
        if run and _GAP.fullmatch(blanked, run[-1].end(), tok.start()) is None:
            run = []
        run.append(tok)
        if len(run) > len(best):
            best = list(run)
    sequence = [_value(m.group(0)) for m in best]
    if mentions and len(mentions) >= len(sequence):
        return "mention", mentions
    if sequence:
        return "sequence", sequence
    return "none", []


def repair(ids: list[int], n: int) -> tuple[list[int], dict]:
    """1-based ids -> permutation of range(n) and repair stats (see the Rust module doc, step 4)."""
    perm: list[int] = []
    taken: set[int] = set()
    duplicates = out_of_range = 0
    for k in ids:
        if not 1 <= k <= n:
            out_of_range += 1
        elif k - 1 in taken:
            duplicates += 1
        else:
            taken.add(k - 1)
            perm.append(k - 1)
    unparseable = not perm
    missing = n - len(perm)
    perm += [i for i in range(n) if i not in taken]
    stats = {
        "duplicates": duplicates,
        "out_of_range": out_of_range,
        "missing": missing,
        "unparseable": unparseable,
        "identity": perm == list(range(n)),
    }
    return perm, stats


def parse_permutation(text: str, n: int) -> tuple[list[int], dict]:
    return repair(extract_ids(text)[1], n)


def format_permutation(perm: list[int]) -> str:
    return " > ".join(f"[{p + 1}]" for p in perm)


def apply_window(order: list[int], start: int, window_perm: list[int]) -> list[int]:
    w = len(window_perm)
    if sorted(window_perm) != list(range(w)):
        raise ValueError(f"window_perm is not a permutation: {window_perm}")
    if start < 0 or start + w > len(order):
        raise ValueError(f"window [{start}, {start + w}) outside order of length {len(order)}")
    window = order[start : start + w]
    return order[:start] + [window[p] for p in window_perm] + order[start + w :]


def window_starts(n: int, window: int, step: int) -> list[int]:
    if window < 1 or not 1 <= step <= window or n < 0:
        raise ValueError(f"bad window_starts arguments n={n} window={window} step={step}")
    if n == 0:
        return []
    starts = []
    s = n - window
    while s > 0:
        starts.append(s)
        s -= step
    return starts + [0]

