"""Durable answer cache and cost ledger for LLM calls (stdlib ``sqlite3``, WAL mode).

Records:
- ``ChatRequest``: what is asked (model, messages, decoding parameters). Its ``key()`` is the cache key.
- ``ChatResult``: what came back (text, token usage, latency, finish reason, whether it was cached).
- ``Ledger``: counts over calls (calls, cache hits, retries, failures, tokens in/out, estimated cost).

Cache key policy: ``sha256`` of a canonical JSON (sorted keys, no spaces, UTF-8) of
``{"v": 1, "model", "messages": [{"role", "content"}...], "decoding": {temperature, max_tokens, seed,
top_p, stop}}``, parameters left at ``None`` omitted, floats written as floats (``0`` and ``0.0`` are
the same key). The endpoint (``base_url``) is deliberately *not* in the key: the same model asked the
same thing on another server (a second vLLM replica, a local copy) is a hit. If two endpoints serve
different weights under one model name, give them different model names.
Sampling (temperature > 0) is cached too: asking again returns the stored answer; change ``seed`` to
draw a new sample.

Durability: one transaction per answer (the answer and its ledger row together), ``synchronous=FULL``,
so a crash or Ctrl-C loses only calls still in flight; a rerun makes no call for anything stored.
One connection guarded by a lock serves all threads of a process; several processes may share the
file (WAL readers do not block the writer; writers wait up to ``timeout`` seconds for each other).

Nothing secret is stored: no API key, no HTTP headers; endpoints are stored without user/password.

Tables: ``answers(key PK, model, request JSON, text, finish_reason, prompt_tokens, completion_tokens,
latency_s, created)`` and ``calls(id, created, run_id, key, model, endpoint, outcome 'ok'|'hit'|'error',
error, retries, prompt_tokens, completion_tokens, latency_s, cost)``; ``summary()`` sums ``calls``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Mapping, Sequence

SCHEMA_VERSION = 2  # 2: calls.malformed
ROLES = ("system", "user", "assistant")

# Decoding parameters a ChatRequest carries (and that are part of the cache key).
DECODING_PARAMS = ("temperature", "max_tokens", "seed", "top_p", "stop")
_FLOAT_PARAMS = ("temperature", "top_p")
_INT_PARAMS = ("max_tokens", "seed")


def _normalise_messages(messages) -> tuple[dict, ...]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        raise ValueError(f"messages: expected a non-empty list of {{'role', 'content'}} dicts, got {messages!r:.200}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValueError(f"messages[{i}]: expected a dict with 'role' and 'content', got {type(m).__name__}")
        extra = set(m) - {"role", "content"}
        if extra:
            raise ValueError(f"messages[{i}]: expected only 'role' and 'content', got extra keys {sorted(extra)}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{i}]['role']: expected one of {list(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}]['content']: expected a str, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    return tuple(out)


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request. Build with ``ChatRequest.build(model, messages, **decoding)``,
    which validates and normalises (``messages``: a tuple of ``{"role", "content"}`` dicts)."""

    model: str
    messages: tuple  # tuple[dict[str, str], ...]
    temperature: float = 0.0
    max_tokens: int | None = None
    seed: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None

    @classmethod
    def build(cls, model: str, messages, **decoding) -> "ChatRequest":
        unknown = set(decoding) - set(DECODING_PARAMS)
        if unknown:
            raise TypeError(f"unknown decoding parameter(s) {sorted(unknown)}; expected some of {list(DECODING_PARAMS)}")
        if not isinstance(model, str) or not model:
            raise ValueError(f"model: expected a non-empty str, got {model!r}")
        values = {}
        for name in _FLOAT_PARAMS:
            v = decoding.get(name, 0.0 if name == "temperature" else None)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise ValueError(f"{name}: expected a finite number >= 0, got {v!r}")
                v = float(v)
            values[name] = v
        for name in _INT_PARAMS:
            v = decoding.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise ValueError(f"{name}: expected an int or None, got {v!r}")
            if name == "max_tokens" and v is not None and v < 1:
                raise ValueError(f"max_tokens: expected >= 1, got {v}")
            values[name] = v
        stop = decoding.get("stop")
        if stop is not None:
            stop = (stop,) if isinstance(stop, str) else tuple(stop)
            if not stop or not all(isinstance(s, str) and s for s in stop):
                raise ValueError(f"stop: expected a non-empty str or list of non-empty str, got {decoding['stop']!r}")
        values["stop"] = stop
        if values["temperature"] is None:
            raise ValueError("temperature: expected a number, got None")
        return cls(model=model, messages=_normalise_messages(messages), **values)

    def decoding(self) -> dict:
        """The decoding parameters that are set (``None`` left out), as the SDK takes them."""
        out = {}
        for name in DECODING_PARAMS:
            v = getattr(self, name)
            if v is not None:
                out[name] = list(v) if name == "stop" else v
        return out

    def canonical(self) -> str:
        """Canonical JSON of the request (the text hashed into ``key()``)."""
        doc = {"v": 1, "model": self.model, "messages": list(self.messages), "decoding": self.decoding()}
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def key(self) -> str:
        """Cache key: sha256 hex of ``canonical()``."""
        return hashlib.sha256(self.canonical().encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChatResult:
    """A chat answer. ``latency_s`` is the wall time of the call including SDK retries (for a cached
    answer: that of the original call). Token counts are ``None`` when the endpoint reported no usage."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    cached: bool
    finish_reason: str | None
    key: str = ""


@dataclass(frozen=True)
class Ledger:
    """Counts over LLM calls.

    ``calls``: requests sent to an endpoint (a call counts once however many SDK retries it took; failed
    calls included). ``cache_hits``: answers served from the cache (no call). ``retries``: HTTP retries
    the SDK made. ``failures``: calls that ended in an ``LLMError``. Tokens: as reported by the endpoint
    for successful calls. ``cost``: ``prompt_tokens * price_in_per_m / 1e6 + completion_tokens *
    price_out_per_m / 1e6`` with the prices the client was given (an estimate; 0 for local models).
    """

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    malformed: int = 0  # HTTP 200 answers that were not a usable chat completion (each one re-asked)

    def __add__(self, other: "Ledger") -> "Ledger":
        if not isinstance(other, Ledger):
            return NotImplemented
        return Ledger(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(Ledger)))

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(Ledger)}

    def __str__(self) -> str:
        bad = f", {self.malformed} malformed answers" if self.malformed else ""
        return (
            f"{self.calls} calls ({self.failures} failed, {self.retries} retries{bad}), {self.cache_hits} cache hits, "
            f"{self.prompt_tokens:,} tokens in / {self.completion_tokens:,} out, est. cost ${self.cost:.4f}"
        )


def call_cost(prompt_tokens: int | None, completion_tokens: int | None, price_in_per_m: float, price_out_per_m: float) -> float:
    """Estimated cost of one call: ``prompt_tokens * price_in_per_m / 1e6 + completion_tokens * price_out_per_m / 1e6``."""
    return ((prompt_tokens or 0) * price_in_per_m + (completion_tokens or 0) * price_out_per_m) / 1e6


_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s REAL NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    model TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'hit', 'error')),
    error TEXT,
    retries INTEGER NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    latency_s REAL,
    cost REAL NOT NULL,
    malformed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS calls_run ON calls (run_id);
"""


def new_run_id() -> str:
    """A run id: UTC time and process id, e.g. ``20250101T120000Z-1234``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{os.getpid()}"


class LLMCache:
    """The answer cache and call ledger in one SQLite file (``":memory:"`` works, for tests).

    Thread-safe (one connection, one lock). Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 30.0):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, SCHEMA_VERSION):
                raise ValueError(f"{self.path}: LLM cache schema version {version}, expected {SCHEMA_VERSION}")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            if version == 1:  # a cache from before malformed answers were counted: add the column, keep the rows
                self._conn.execute("ALTER TABLE calls ADD COLUMN malformed INTEGER NOT NULL DEFAULT 0")
            self._conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")
        except sqlite3.DatabaseError as e:
            self._conn.close()
            raise ValueError(f"{self.path}: not a usable LLM cache (SQLite said: {e})") from e
        except ValueError:
            self._conn.close()
            raise

    # -- reading ---------------------------------------------------------------------------------
    def get(self, key: str) -> ChatResult | None:
        """The stored answer for ``key`` (``cached=True``), or ``None``."""
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, ChatResult]:
        """Stored answers for those of ``keys`` that are cached."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, ChatResult] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = keys[start : start + 500]
                rows = self._conn.execute(
                    "SELECT key, text, prompt_tokens, completion_tokens, latency_s, finish_reason FROM answers "
                    f"WHERE key IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for k, text, pt, ct, lat, fr in rows:
                    out[k] = ChatResult(text, pt, ct, lat, True, fr, k)
        return out

    def request_of(self, key: str) -> dict | None:
        """The stored request (parsed canonical JSON) for ``key``, or ``None``."""
        with self._lock:
            row = self._conn.execute("SELECT request FROM answers WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def summary(self, *, run_id: str | None = None, model: str | None = None) -> Ledger:
        """A ``Ledger`` summed over the stored calls of all runs (or one ``run_id`` / one ``model``)."""
        where, args = [], []
        if run_id is not None:
            where.append("run_id = ?")
            args.append(run_id)
        if model is not None:
            where.append("model = ?")
            args.append(model)
        sql = (
            "SELECT COALESCE(SUM(outcome != 'hit'), 0), COALESCE(SUM(outcome = 'hit'), 0), COALESCE(SUM(retries), 0), "
            "COALESCE(SUM(outcome = 'error'), 0), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0), "
            "COALESCE(SUM(cost), 0.0), COALESCE(SUM(malformed), 0) FROM calls"
            + (" WHERE " + " AND ".join(where) if where else "")
        )
        with self._lock:
            row = self._conn.execute(sql, args).fetchone()
        return Ledger(*(int(v) for v in row[:6]), float(row[6]), int(row[7]))

    def run_ids(self) -> list[str]:
        """Run ids in the ledger, oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT run_id FROM calls GROUP BY run_id ORDER BY MIN(id)").fetchall()
        return [r[0] for r in rows]

    # -- writing (each method is one transaction) ------------------------------------------------
    def put(
        self,
        request: ChatRequest,
        result: ChatResult,
        *,
        retries: int = 0,
        cost: float = 0.0,
        run_id: str = "",
        endpoint: str = "",
        malformed: int = 0,
    ) -> None:
        """Store an answer and its ledger row in one transaction. An answer already stored under the
        same key is kept (the first answer wins)."""
        key = request.key()
        now = time.time()
        with self._lock, self._transaction():
            self._conn.execute(
                "INSERT OR IGNORE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, request.model, request.canonical(), result.text, result.finish_reason,
                 result.prompt_tokens, result.completion_tokens, result.latency_s, now),
            )
            self._conn.execute(
                "INSERT INTO calls (created, run_id, key, model, endpoint, outcome, error, retries, prompt_tokens, "
                "completion_tokens, latency_s, cost, malformed) VALUES (?, ?, ?, ?, ?, 'ok', NULL, ?, ?, ?, ?, ?, ?)",
                (now, run_id, key, request.model, endpoint, retries, result.prompt_tokens,
                 result.completion_tokens, result.latency_s, cost, malformed),
            )

    def record_failure(
        self,
        request: ChatRequest,
        *,
        error: str,
        retries: int = 0,
        latency_s: float | None = None,
        run_id: str = "",
        endpoint: str = "",
        malformed: int = 0,
    ) -> None:
        """Store a ledger row for a failed call (``error``: the exception class name)."""
        with self._lock, self._transaction():
            self._conn.execute(
                "INSERT INTO calls (created, run_id, key, model, endpoint, outcome, error, retries, prompt_tokens, "
                "completion_tokens, latency_s, cost, malformed) VALUES (?, ?, ?, ?, ?, 'error', ?, ?, NULL, NULL, ?, "
                "0.0, ?)",
                (time.time(), run_id, request.key(), request.model, endpoint, error, retries, latency_s, malformed),
            )

    def record_hits(self, hits: Sequence[tuple[str, str]], *, run_id: str = "", endpoint: str = "") -> None:
        """Store ledger rows for cache hits, ``hits`` = ``[(key, model), ...]``, in one transaction."""
        if not hits:
            return
        now = time.time()
        with self._lock, self._transaction():
            self._conn.executemany(
                "INSERT INTO calls (created, run_id, key, model, endpoint, outcome, error, retries, prompt_tokens, "
                "completion_tokens, latency_s, cost) VALUES (?, ?, ?, ?, ?, 'hit', NULL, 0, NULL, NULL, NULL, 0.0)",
                [(now, run_id, k, m, endpoint) for k, m in hits],
            )

    @contextmanager
    def _transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` if the block raises). Caller holds the lock."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "LLMCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LLMCache({self.path!r})"

