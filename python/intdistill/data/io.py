"""Reading and writing lines: UTF-8 text (``.gz`` too), id and field checks, JSON Lines."""

from __future__ import annotations

import gzip
import json
import os
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from typing import IO, Any, Iterable, Iterator, Mapping

from intdistill.data.records import _WHITESPACE, DataError, log


# ------------------------------------------------------------------------------------------ low level


def _is_gz(path) -> bool:
    return os.fspath(path).endswith(".gz")


def _open_text(path) -> IO[str]:
    """UTF-8 text (BOM dropped), universal newlines; ``.gz`` decompressed."""
    if _is_gz(path):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline=None)
    return open(path, encoding="utf-8-sig", newline=None, buffering=1 << 20)


def _decode_error(path, exc: UnicodeDecodeError) -> DataError:
    """Find the line and byte offset of the first byte that is not UTF-8 (the text reader decodes in
    blocks, so it cannot tell)."""
    opener = gzip.open if _is_gz(path) else open
    offset = 0
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                where = " (offset in the decompressed stream)" if _is_gz(path) else ""
                return DataError(path, lineno, f"expected UTF-8 text, got undecodable byte 0x{raw[e.start]:02x} "
                                               f"at byte offset {offset + e.start}{where}")
            offset += len(raw)
    return DataError(path, None, f"expected UTF-8 text, got {exc}")


@contextmanager
def _decoding(path):
    try:
        yield
    except UnicodeDecodeError as e:
        raise _decode_error(path, e) from None


def _short(text: str, limit: int = 80) -> str:
    r = repr(text)
    return r if len(r) <= limit else r[: limit - 3] + "..."


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "integer", float: "number", bool: "boolean",
               type(None): "null"}


def _describe(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    text = json.dumps(value, ensure_ascii=False, default=str)
    text = text if len(text) <= 60 else text[:57] + "..."
    return "null" if value is None else f"{kind} {text}"


def _check_id(value: Any, path, line, what: str) -> str:
    """A JSON id: a non-empty string (or integer, turned into a string) without whitespace."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise DataError(path, line, f"expected {what} to be a string, got {_describe(value)}")
    s = str(value)
    if not s or _WHITESPACE.search(s):
        raise DataError(path, line, f"expected {what} to be non-empty without whitespace "
                                    f"(TREC files are whitespace-separated), got {_short(s)}")
    return s


def _get_id(obj: dict, path, line) -> str:
    keys = [k for k in ("_id", "id") if k in obj]
    if not keys:
        raise DataError(path, line, f"expected a field '_id' or 'id', got fields {sorted(obj)}")
    if len(keys) == 2 and obj["_id"] != obj["id"]:
        raise DataError(path, line, f"expected '_id' and 'id' to agree, got {_describe(obj['_id'])} "
                                    f"and {_describe(obj['id'])}")
    return _check_id(obj[keys[0]], path, line, f"'{keys[0]}'")


def _get_str(obj: dict, keys: tuple[str, ...], path, line, *, required: bool) -> str | None:
    """The first of ``keys`` present (a string; None/absent allowed when not required)."""
    present = [k for k in keys if k in obj and obj[k] is not None]
    if not present:
        if required:
            if any(k in obj for k in keys):
                null = next(k for k in keys if k in obj)
                raise DataError(path, line, f"expected '{null}' to be a string, got null")
            names = " or ".join(f"'{k}'" for k in keys)
            raise DataError(path, line, f"expected a string field {names}, got fields {sorted(obj)}")
        return None
    if len(present) > 1 and len({json.dumps(obj[k]) for k in present}) > 1:
        raise DataError(path, line, f"expected at most one of {present} (or equal values), got different values")
    value = obj[present[0]]
    if not isinstance(value, str):
        raise DataError(path, line, f"expected '{present[0]}' to be a string, got {_describe(value)}")
    return value


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _skip(container, reason: str, n: int, path) -> None:
    if n:
        container.skipped[reason] = container.skipped.get(reason, 0) + n
        log.warning("%s: skipped %d (%s)", path, n, reason.replace("_", " "))


# -------------------------------------------------------------------------------------------- JSONL


def iter_jsonl(path, *, appended: bool = False, partial_first_line: bool = True) -> Iterator[tuple[int, dict]]:
    """Yield ``(line number, object)`` for each non-blank line; every line must be a JSON object.

    ``appended=True`` is for files written one line at a time (labels, RAG predictions): a last line without its
    newline that is not valid JSON was cut off mid-write by a crash, so it is skipped with a warning (its record
    is made again on resume); with ``partial_first_line=False`` a cut first line is still an error. Every other
    bad line is a DataError naming the file and line."""
    with _open_text(path) as f, _decoding(path):
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                if appended and not line.endswith("\n") and (partial_first_line or lineno > 1):
                    log.warning("%s:%d: ignoring an incomplete last line (interrupted write)", path, lineno)
                    continue
                raise DataError(path, lineno, f"expected a JSON object, got invalid JSON ({e.msg} at column "
                                              f"{e.colno})") from None
            if not isinstance(obj, dict):
                raise DataError(path, lineno, f"expected a JSON object, got {_describe(obj)}")
            yield lineno, obj


def load_jsonl(path) -> list[dict]:
    """All objects of a JSON Lines file, in order (blank lines passed over)."""
    return [obj for _, obj in iter_jsonl(path)]


def _to_jsonable(record: Any) -> Any:
    if is_dataclass(record) and not isinstance(record, type):
        return asdict(record)
    if hasattr(record, "_asdict"):  # NamedTuple
        return record._asdict()
    return record


@contextmanager
def _atomic_writer(path, *, append: bool = False):
    """Text writer (UTF-8, ``\\n`` lines, gzip for ``.gz``) that replaces ``path`` only once everything is
    written (:func:`intdistill.journal.atomic_writer`); ``append`` writes in place."""
    if append:
        path = os.fspath(path)
        with (gzip.open(path, "at", encoding="utf-8") if _is_gz(path)
              else open(path, "a", encoding="utf-8", newline="\n")) as f:
            yield f
        return
    from intdistill.journal import atomic_writer

    with atomic_writer(path, newline="\n") as f:
        yield f


def dump_jsonl(records: Iterable[Any], path, *, append: bool = False) -> int:
    """Write one JSON object per line (UTF-8, strict JSON: NaN is refused); returns the number written.

    Records may be mappings, dataclasses or NamedTuples. Without ``append`` the file is replaced
    atomically (written to a temporary file first), so a crash never leaves half a file.
    """
    n = 0
    with _atomic_writer(path, append=append) as f:
        for i, record in enumerate(records):
            obj = _to_jsonable(record)
            if not isinstance(obj, Mapping):
                raise ValueError(f"record {i}: expected a mapping, dataclass or NamedTuple, "
                                 f"got {type(record).__name__}")
            try:
                f.write(json.dumps(obj, ensure_ascii=False, allow_nan=False))
            except (TypeError, ValueError) as e:
                raise ValueError(f"record {i}: expected JSON-serialisable values, got {e}") from None
            f.write("\n")
            n += 1
    return n
