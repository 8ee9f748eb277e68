"""Corpus, queries, qrels and runs: loading, validation and typed records.

Records (one per thing):
- ``Passage(id, text, title)``; a corpus is an insertion-ordered ``dict[str, Passage]`` (a ``Corpus``).
- ``Query(id, text, answers)``; a query set is an insertion-ordered ``dict[str, Query]`` (a ``Queries``).
- ``Qrels``: ``{qid: {docid: relevance}}`` (a dict subclass, so plain dicts interoperate).
- ``Run``: ``{qid: {docid: score}}`` plus a ``tag`` (a dict subclass).
- ``Dataset(corpus, queries, qrels)``: what ``load_beir`` and ``load_squad`` return.

Every loaded container also carries ``source`` (the file it came from, or ``None``) and ``skipped``
(``{reason: count}`` of what the loader left out on purpose; empty when nothing was). Skips are also
logged as warnings on ``logging.getLogger("intdistill.data")``.

Formats (chosen by path; ``.gz`` is decompressed transparently everywhere):
- a directory: BEIR (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``);
- ``*.json``: SQuAD v1.1 (one passage per paragraph, id ``<article title>#<paragraph index>``, the title
  kept as written, e.g. ``Super_Bowl_50#0``; ``Passage.title`` has underscores turned into spaces);
- anything else: JSON Lines for corpus and queries, TREC or BEIR TSV for qrels, TREC for runs.

Policies:
- Text is UTF-8 (a leading BOM is ignored); LF, CRLF and CR line ends all count as one line end.
  Blank lines carry no data and are passed over in every line format.
- Ids are non-empty strings without whitespace (TREC files are whitespace-separated); JSON integers are
  accepted as ids and turned into strings. Duplicate ids are errors.
- Bad input raises ``DataError(path, line, message)``: the file, the 1-based line and what was expected
  versus what came. In a SQuAD JSON file, ``line`` is ``None`` and the message names the JSON path.
- Line numbers are not stored per record: when an error needs the line of an earlier record (a duplicate
  id, an unknown id found by ``validate``), the file is scanned again. The common path pays nothing.
"""

from intdistill.data.records import (Corpus, DataError, Dataset, Passage, Qrels, Queries, Query, Run,
                                     ValidationReport)
from intdistill.data.io import (_decoding, _is_gz, _open_text, dump_jsonl, iter_jsonl,  # noqa: F401
                                load_jsonl)
from intdistill.data.loaders import (load_beir, load_corpus, load_qrels, load_queries, load_sources,
                                     load_squad)
from intdistill.data.runs import load_run, save_qrels, save_run, validate

__all__ = [
    "Corpus", "DataError", "Dataset", "Passage", "Qrels", "Queries", "Query", "Run", "ValidationReport",
    "dump_jsonl", "iter_jsonl", "load_beir", "load_corpus", "load_jsonl", "load_qrels", "load_queries", "load_run",
    "load_sources", "load_squad", "save_qrels", "save_run", "validate",
]
