"""Corpus and query formats beyond JSONL, BEIR and SQuAD: TSV files and ``ir_datasets`` identifiers.

TSV (``.tsv``, ``.tsv.gz``), as MS MARCO's ``collection.tsv`` / ``queries.*.tsv``, TREC DL and many public
sets ship them: one record per line, tab-separated, UTF-8.

- Without a header: ``id<TAB>text``, or ``id<TAB>title<TAB>text`` (three columns).
- With a header (its first cell names the id column: ``id``, ``_id``, ``docid``, ``doc_id``, ``pid``, ``qid``,
  ``query_id``, ``query-id``): the columns are found by name: the id, ``title`` (optional), and the text
  (``text``, ``passage``, ``contents``, ``body``, ``query``, ``question``). Other columns are ignored.
- A line with another number of cells than the first is an error naming the file and line.

``irds:NAME`` (e.g. ``irds:beir/scifact``) reads ``ir_datasets``' dataset NAME (the optional extra
``intdistill[irds]``) from its local copy: ``docs_iter()`` -> passages (``doc_id``, ``title``, ``text``),
``queries_iter()`` -> queries, ``qrels_iter()`` -> qrels. Offline, a dataset without a local copy is an
error saying what is missing; nothing is downloaded unless ir_datasets itself is allowed to.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

ID_COLUMNS = ("id", "_id", "docid", "doc_id", "pid", "qid", "query_id", "query-id", "queryid")
TEXT_COLUMNS = ("text", "passage", "contents", "body", "query", "question")
IRDS_PREFIX = "irds:"


def is_tsv(path) -> bool:
    name = os.fspath(path).lower()
    return name.endswith(".tsv") or name.endswith(".tsv.gz")


def is_irds(path) -> bool:
    return isinstance(path, str) and path.startswith(IRDS_PREFIX)


def iter_tsv(path, what: str) -> Iterator[tuple[int, str, str, str]]:
    """``(line, id, title, text)`` of a TSV corpus or queries file (see the module docstring)."""
    from intdistill.data import DataError, _decoding, _open_text

    cols: tuple[int, int | None, int] | None = None
    width = None
    with _open_text(path) as f, _decoding(path):
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cells = line.split("\t")
            if cols is None:
                head = [c.strip().lower() for c in cells]
                if head[0] in ID_COLUMNS:
                    text = next((i for i, c in enumerate(head) if c in TEXT_COLUMNS), None)
                    if text is None:
                        raise DataError(path, lineno, f"expected a header naming a text column (one of "
                                                      f"{', '.join(TEXT_COLUMNS)}), got {cells}")
                    cols = (0, head.index("title") if "title" in head else None, text)
                    width = len(cells)
                    continue
                if len(cells) not in (2, 3):
                    raise DataError(path, lineno, f"expected {what} TSV lines 'id<TAB>text' or 'id<TAB>title<TAB>"
                                                  f"text', got {len(cells)} tab-separated cells")
                cols, width = ((0, None, 1) if len(cells) == 2 else (0, 1, 2)), len(cells)
            if len(cells) != width:
                raise DataError(path, lineno, f"expected {width} tab-separated cells as on the first line, got "
                                              f"{len(cells)}")
            i, t, x = cols
            yield lineno, cells[i].strip(), (cells[t].strip() if t is not None else ""), cells[x]


def irds_dataset(spec: str):
    """The ``ir_datasets`` dataset of ``irds:NAME``; a missing package or dataset is a DataError."""
    from intdistill.data import DataError

    name = spec[len(IRDS_PREFIX):]
    try:
        import ir_datasets
    except ImportError:
        raise DataError(spec, None, "reading an ir_datasets identifier needs the optional package ir_datasets: "
                                    "pip install 'intdistill[irds]'") from None
    try:
        return ir_datasets.load(name)
    except KeyError:
        raise DataError(spec, None, f"ir_datasets has no dataset {name!r}") from None


def irds_records(spec: str, kind: str):
    """Iterate the dataset's ``docs``/``queries``/``qrels``, turning "no local copy and no network" into a
    DataError that names the dataset and what is missing."""
    from intdistill.data import DataError

    ds = irds_dataset(spec)
    if not getattr(ds, f"has_{kind}", lambda: True)():
        raise DataError(spec, None, f"ir_datasets dataset {spec[len(IRDS_PREFIX):]!r} has no {kind}")
    try:
        yield from getattr(ds, f"{kind}_iter")()
    except (OSError, ConnectionError) as e:
        raise DataError(spec, None, f"the local copy of ir_datasets' {spec[len(IRDS_PREFIX):]!r} {kind} is "
                                    f"missing and could not be downloaded ({type(e).__name__}: {e}); put it under "
                                    "$IR_DATASETS_HOME (default ~/.ir_datasets) or allow ir_datasets to download "
                                    "it") from None
