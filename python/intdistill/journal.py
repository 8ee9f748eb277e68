"""Durable files for long runs: atomic writes, and the append-only journal of finished items.

A :class:`Journal` is a JSONL file with one line per finished item (an LLM label, a RAG answer, a generated
query), keyed by an id field. Each line is flushed and fsynced as it is written, so a kill loses at most the
line being written; on open, a cut-off last line is dropped and the file rewritten so appends start on a
fresh line. Items already in the file are ``done``: a rerun skips them. ``check`` is given every line read so
a caller can refuse a file written with other settings (another model or prompt).

Beside it, ``<stem>.failed.jsonl`` (:class:`FailureLog`) lists the items whose LLM calls still failed after
every retry: their id, the error's class and message (which never holds an API key), the retries and the
time. It is rewritten atomically at each change; an item that later succeeds leaves it. A rerun retries only
the items not in the journal, which are exactly the failed and the never-tried ones.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_writer(path, *, mode: str = "w", encoding: str | None = "utf-8",
                  newline: str | None = None) -> Iterator[IO]:
    """Write ``path`` through a temporary file in the same directory, fsynced and renamed into place on
    success (so readers see the old file or the new one, never a part); removed on error. A text ``path``
    ending in ``.gz`` is written gzip-compressed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    binary = "b" in mode
    gz = not binary and path.name.endswith(".gz")
    text = {} if binary or gz else {"encoding": encoding, "newline": newline}
    try:
        with open(tmp, "wb" if gz else mode, **text) as raw:
            if gz:
                # the gzip member is closed (its trailer written) before the file is fsynced
                with gzip.GzipFile(filename="", fileobj=raw, mode="wb") as z, \
                        io.TextIOWrapper(z, encoding=encoding, newline=newline) as f:
                    yield f
            else:
                yield raw
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path, obj: Any) -> Path:
    """``obj`` as indented JSON at ``path``, atomically."""
    with atomic_writer(path) as f:
        f.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")
    return Path(path)


def failed_path(path) -> Path:
    """``labels.jsonl`` -> ``labels.failed.jsonl``: where a journal's failed items are listed."""
    path = Path(path)
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(stem + ".failed.jsonl")


class FailureLog:
    """The items that failed, ``id -> record``, kept in a JSONL file rewritten atomically at each change."""

    def __init__(self, path):
        self.path = Path(path)
        self.items: dict[str, dict] = {}
        if self.path.is_file():
            from intdistill.data import iter_jsonl

            for _, obj in iter_jsonl(self.path, appended=True):
                self.items[str(obj.get("id"))] = obj

    def add(self, item_id: str, error: BaseException) -> None:
        self.items[item_id] = {"id": item_id, "error": type(error).__name__, "message": str(error),
                               "retries": int(getattr(error, "retries", 0) or 0), "at": round(time.time(), 3)}
        self._save()

    def discard(self, item_id: str) -> None:
        if self.items.pop(item_id, None) is not None:
            self._save()

    def _save(self) -> None:
        if not self.items:
            self.path.unlink(missing_ok=True)
            return
        with atomic_writer(self.path) as f:
            for rec in self.items.values():
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self.items


class Journal:
    """An append-only JSONL journal of finished items (see the module docstring).

    ``key``: the id field of each line. ``parse(obj, path, line)``: a line's record (raise ``DataError`` on a
    bad one; default: the dict itself). ``check(done)``: called with every record read, to refuse a file
    written with other settings. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path, *, key: str = "qid", parse: Callable[[dict, Path, int], Any] | None = None,
                 check: Callable[[Mapping[str, Any]], None] | None = None):
        from intdistill.data import DataError, iter_jsonl

        self.path = Path(path)
        self.key = key
        self.done: dict[str, Any] = {}
        lines: list[bytes] = []
        if self.path.is_file():
            for line, obj in iter_jsonl(self.path, appended=True):
                if key not in obj:
                    raise DataError(self.path, line, f"expected a {key!r} field, got keys {sorted(obj)[:8]}")
                self.done[str(obj[key])] = parse(obj, self.path, line) if parse else obj
                lines.append(json.dumps(obj, ensure_ascii=False).encode() + b"\n")
            if check is not None:
                check(self.done)
            if self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
                # a cut-off last line (killed mid-write): keep the good lines so appends start on a fresh line
                with atomic_writer(self.path, mode="wb") as f:
                    f.write(b"".join(lines))
        self.failures = FailureLog(failed_path(self.path))
        self._sink: IO | None = None

    def append(self, obj: Mapping[str, Any], record: Any = None) -> None:
        """Write one finished item's line (flushed and fsynced) and mark it done; a failure of the same
        item recorded earlier is dropped."""
        if self._sink is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._sink = open(self.path, "a", encoding="utf-8")
        self._sink.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._sink.flush()
        os.fsync(self._sink.fileno())
        item_id = str(obj[self.key])
        self.done[item_id] = obj if record is None else record
        self.failures.discard(item_id)

    def fail(self, item_id: str, error: BaseException) -> None:
        """Record an item whose calls failed after every retry (the run goes on without it)."""
        self.failures.add(item_id, error)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
