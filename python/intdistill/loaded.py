"""Files parsed once per run: the corpus, queries and qrels that every stage of one run reads.

``intdistill run`` executes its stages inside :func:`shared`. There, :func:`intdistill.data.load_corpus`,
``load_queries``, ``load_qrels`` and ``load_sources`` return the object parsed the first time for the same
file (same resolved path, size and modification time, same options): a 5,000-passage corpus is parsed once
per run, not once per stage. A file rewritten during the run (a stage's output read by the next) has a new
size or time and is parsed again. Outside :func:`shared` (a single command) every call parses.

The shared objects are read-only by convention: a stage that wants to change one copies it first.
:func:`parse_counts` says how many times each kind of file was actually parsed (tests and the manifest use it).
"""

from __future__ import annotations

import functools
import os
from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Iterator

_MEMO: ContextVar[dict | None] = ContextVar("intdistill_loaded", default=None)
_PARSES: Counter = Counter()


def _file_key(path) -> tuple | None:
    """What identifies a file's content cheaply: resolved path, size and mtime (for a directory, those of every
    file in it); ``irds:NAME`` by its name. None when the path cannot be read (the loader then reports it)."""
    text = str(path)
    if text.startswith("irds:"):
        return ("irds", text)
    p = Path(path)
    try:
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file())
            return (str(p.resolve()), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))
        st = os.stat(p)
    except OSError:
        return None
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


def shared_load(kind: str) -> Callable:
    """Decorator of a ``load_X(path, **options)`` function: inside :func:`shared`, one parse per file."""

    def wrap(load: Callable) -> Callable:
        @functools.wraps(load)
        def loader(path, **options: Any):
            memo = _MEMO.get()
            key = _file_key(path) if memo is not None else None
            if key is None:
                _PARSES[kind] += 1
                return load(path, **options)
            k = (kind, key, tuple(sorted(options.items())))
            if k not in memo:
                _PARSES[kind] += 1
                memo[k] = load(path, **options)
            return memo[k]

        return loader

    return wrap


@contextmanager
def shared() -> Iterator[dict]:
    """Within this block, each file is parsed once (see the module doc). Nested blocks share the outer memo."""
    if _MEMO.get() is not None:
        yield _MEMO.get()
        return
    memo: dict = {}
    token = _MEMO.set(memo)
    try:
        yield memo
    finally:
        _MEMO.reset(token)


def parse_counts() -> dict[str, int]:
    """How many times each kind of file (corpus, queries, qrels, sources) was parsed in this process."""
    return dict(_PARSES)
