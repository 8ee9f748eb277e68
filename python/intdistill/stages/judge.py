"""The judging stages: open and search an index, compare runs, check a ranker.

These are what ``intdistill search``/``evaluate``/``label-report --ranker``/``rag`` do after parsing their
flags, and what ``intdistill run`` calls directly, with objects in and objects out (no command line, no
stdout in between). Each takes the data it needs already loaded, so one run parses its corpus once.

- :func:`open_index`: an index and its retriever, checked to fit (the ``--index`` commands).
- :func:`search`: the top ``k`` of every query as :class:`~intdistill.candidates.Candidates`.
- :func:`compare_runs`: evaluate named runs and test each against the first (the baseline).
- :class:`RankerCheck` + :func:`check_ranker`: a trained ranker's order of held-out lists against the first
  stage's, as a :class:`~intdistill.gate.TeacherReport` (the ranker check; ``label-report --ranker``).
- :func:`select_queries`: a seeded sample and/or the first N of a query set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Mapping, NamedTuple, Sequence

from intdistill.data import DataError, Passage, Query

if TYPE_CHECKING:
    from intdistill.candidates import Candidates
    from intdistill.gate import TeacherReport
    from intdistill.labels import Label
    from intdistill.significance import Comparison


class OpenIndex(NamedTuple):
    index: object  # intdistill.index.DenseIndex
    retriever: object  # intdistill.models.Retriever, checked against the index


def _retriever_source(index, index_path) -> str | None:
    """What Retriever.load gets when no retriever is named: the recorded directory, else the recorded name
    (the bundled MiniLM when that is its hub name)."""
    from intdistill.models.common import DEFAULT_MODEL_NAME

    m = index.meta
    if m.retriever_path and os.path.isdir(m.retriever_path):
        return m.retriever_path
    if m.retriever_name == DEFAULT_MODEL_NAME:
        return None
    if m.retriever_name:
        return m.retriever_name
    raise DataError(index_path, None, "the index records no retriever (built from raw embeddings): give --retriever")


def open_index(path, k: int, *, retriever: str | None = None, mmap: bool = False,
               expansion_search: int | None = None, device: str | None = None,
               allow_mismatch: bool = False) -> OpenIndex:
    """Load the index at ``path`` and its retriever (``retriever``, else the one recorded in meta.json), and
    check that they fit: ``k`` at most the passages indexed, the same embedding dimension, the same retriever
    fingerprint unless ``allow_mismatch``. Misfits raise DataError naming the index."""
    from intdistill.index import DenseIndex, RetrieverMismatchError
    from intdistill.models import Retriever

    index = DenseIndex.load(path, mmap=mmap)
    if k > len(index):
        raise DataError(path, None, f"expected -k at most {len(index)} (the passages indexed), got {k}")
    if expansion_search is not None:
        index.expansion_search = expansion_search
    source = retriever if retriever is not None else _retriever_source(index, path)
    model = Retriever.load(source, device=device)
    try:
        index.check_retriever(model, allow_mismatch=allow_mismatch)
    except RetrieverMismatchError as e:
        raise DataError(path, None, f"{e} (command line: --allow-retriever-mismatch)") from None
    except ValueError as e:  # the retriever's dimension is not the index's
        raise DataError(path, None, str(e)) from None
    return OpenIndex(index, model)


def index_corpus(index, index_path, corpus_path=None):
    """The corpus whose passages ``index`` holds: ``corpus_path`` when given, else the one recorded in the
    index's meta.json. DataError when there is none, or when some indexed id is not in it (another corpus)."""
    from intdistill.data import load_corpus

    if corpus_path is None:
        recorded = index.meta.corpus_path
        if not recorded:
            raise DataError(index_path, None, "the index records no corpus file: give --corpus")
        if not os.path.exists(recorded):
            raise DataError(index_path, None, f"the corpus recorded in the index, {recorded}, is not there: "
                                              "give --corpus")
        corpus_path = recorded
    corpus = load_corpus(corpus_path)
    missing = [d for d in index.docids if d not in corpus]
    if missing:
        raise DataError(corpus_path, None, f"expected every indexed passage in the corpus, got {len(missing)} of "
                                           f"{len(index.docids)} missing (e.g. {missing[0]!r}): give the corpus the "
                                           f"index was built from")
    return corpus


def index_bm25(index, index_path, corpus: Mapping[str, Passage], corpus_path=None):
    """``(bm25, how)``: BM25 statistics for :func:`intdistill.candidates.lexical_rescore` over ``corpus``, the
    passages of ``index`` (loaded from ``index_path``). ``intdistill index`` saves them with the index; they
    are loaded when ``corpus`` is the corpus the index records (``corpus_path`` is None or names that file)
    and has as many passages as they were fitted on. Otherwise (another corpus, an index built before they
    were saved, a damaged file: logged) they are fitted on ``corpus`` now. ``how`` says which, for the
    command's stderr line."""
    import logging
    import time

    from intdistill.candidates import corpus_bm25
    from intdistill.lexical import BM25, FILE

    saved = os.path.join(os.fspath(index_path), FILE)
    if os.path.exists(saved):
        recorded = index.meta.corpus_path
        same = corpus_path is None or (recorded and os.path.realpath(corpus_path) == os.path.realpath(recorded))
        if same:
            try:
                bm25 = BM25.load(index_path)
            except (OSError, ValueError) as exc:
                logging.getLogger(__name__).warning("%s; fitting BM25 on the corpus instead", exc)
            else:
                if bm25.n_docs == len(corpus):
                    return bm25, f"BM25 statistics saved with the index ({saved})"
    t0 = time.perf_counter()
    bm25 = corpus_bm25(corpus)
    return bm25, f"BM25 fitted on the {len(corpus)} passages in {time.perf_counter() - t0:.1f}s"


def search(opened: OpenIndex, queries: Mapping[str, Query], k: int, *, exact: bool = False,
           batch_size: int = 64, progress: bool = True) -> "Candidates":
    """The top ``k`` passages of every query (HNSW, or exact with ``exact``), best first."""
    from intdistill.candidates import CandidateList, Candidates

    qids = list(queries)
    emb = opened.retriever.encode_queries([queries[q].text for q in qids], batch_size=batch_size, progress=progress)
    hits = opened.index.search_exact(emb, k) if exact else opened.index.search(emb, k)
    return Candidates({q: CandidateList(tuple(d), tuple(s.tolist()), queries[q].text)
                       for q, d, s in zip(qids, hits.docids, hits.scores)}, opened.retriever.name)


def compare_runs(runs: Mapping[str, Mapping[str, Mapping[str, float]]], measures: Sequence[str], *,
                 qrels=None, queries: Mapping[str, Query] | None = None,
                 corpus: Mapping[str, Passage] | None = None) -> "Comparison":
    """Evaluate each named run (``{qid: {docid: score}}``) on ``measures`` (by ``qrels``, or by the answers of
    ``queries`` found in ``corpus``) and test every run against the first, the baseline. One run gives a
    comparison with no tests."""
    from intdistill.metrics import evaluate
    from intdistill.significance import compare

    if not runs:
        raise ValueError("expected at least one run to compare, got none")
    evaluations = {name: evaluate(qrels, run, measures, queries=queries, corpus=corpus) for name, run in runs.items()}
    return compare(evaluations)


@dataclass(frozen=True)
class RankerCheck:
    """How a trained ranker re-ranks held-out lists for the check (``label-report --ranker`` flags)."""

    max_length: int | None = None  # tokens per (query, passage) pair; None: the ranker's own
    batch_size: int = 64  # pairs per forward pass
    device: str | None = None  # cpu, cuda, mps; None: the best available
    cache_dir: str | None = None  # the first stage's corpus encoding cache, read by a frozen passage tower
    k: int = 10  # the cut of nDCG@k and RR@k
    progress: bool = False  # progress bars on stderr


def load_ranker(ranker_dir, lists: Mapping[str, tuple[str, Sequence[str]]], corpus: Mapping[str, Passage],
                cfg: RankerCheck = RankerCheck()):
    """The ranker saved at ``ranker_dir`` (a directory or hub name), ready to re-rank ``lists``: its frozen
    passage tower primed from ``cfg.cache_dir``. A loaded :class:`~intdistill.models.Ranker` is returned as it
    is, so the functions below that take ``ranker_dir`` also take one (load once, judge several ways)."""
    from intdistill.models import Ranker

    if not lists:
        raise DataError(None, None, "expected at least one candidate list, got none")
    if isinstance(ranker_dir, Ranker):
        return ranker_dir
    try:
        ranker = Ranker.load(ranker_dir, max_length=cfg.max_length, device=cfg.device)
    except (OSError, ValueError) as e:
        raise DataError(ranker_dir, None, f"expected a ranker directory or hub name: {e}") from None
    if cfg.cache_dir:
        ranker.prime_corpus(corpus, (d for _, cands in lists.values() for d in cands), cache_dir=cfg.cache_dir,
                            progress=cfg.progress)
    return ranker


def ranker_order(ranker_dir, lists: Mapping[str, tuple[str, Sequence[str]]], corpus: Mapping[str, Passage],
                 cfg: RankerCheck = RankerCheck()) -> dict[str, "Label"]:
    """The order the ranker saved at ``ranker_dir`` gives each list (``qid -> (query text, candidate ids in
    first-stage order)``), as label records (:func:`intdistill.gate.ranker_labels`)."""
    from intdistill.gate import ranker_labels

    ranker = load_ranker(ranker_dir, lists, corpus, cfg)
    return ranker_labels(ranker, lists, corpus, batch_size=cfg.batch_size, progress=cfg.progress)


def lexical_anchor(ranker):
    """The untrained start of a ranker with a lexical term: ``scale · cos_first_stage + w · bm25 / max_q``, built
    from the frozen copy of the first stage the ranker keeps (the passage tower of ``query-tower``, the anchor of
    ``anchored-cross``). None without a lexical term or without a frozen copy (``twin``, ``cross``)."""
    from intdistill.models import Ranker

    if getattr(ranker, "lexical", None) is None or not ranker.passages_frozen:
        return None
    first = ranker.p_encoder
    anchor = Ranker(bi="frozen", query_encoder=first, passage_encoder=first, scale=ranker.scale,
                    lexical=ranker.lexical, lexical_weight=ranker.lexical_weight, name=ranker.name)
    anchor._passage_cache = ranker._passage_cache  # the same frozen tower: the same embeddings
    return anchor


def check_against_anchor(ranker_dir, lists: Mapping[str, tuple[str, Sequence[str]]], corpus: Mapping[str, Passage],
                         cfg: RankerCheck = RankerCheck(), *, qrels=None, queries: Mapping[str, Query] | None = None,
                         labels: Mapping[str, "Label"] | None = None) -> "TeacherReport | None":
    """The labels' share of a ranker with a lexical term: its order of ``lists`` against its untrained anchor's
    (:func:`lexical_anchor`: the first stage + BM25, no labels), judged like :func:`check_ranker`. A ranker the
    check finds better than the first stage may owe all of it to BM25; this says whether training added
    anything. None when the ranker has no lexical term or keeps no frozen first stage. ``labels``: the ranker's
    order of ``lists`` when :func:`ranker_order` already has it (not scored again)."""
    from intdistill.gate import Label, ranker_labels, teacher_report

    ranker = load_ranker(ranker_dir, lists, corpus, cfg)
    anchor = lexical_anchor(ranker)
    if anchor is None:
        return None
    trained = labels if labels is not None else ranker_labels(ranker, lists, corpus, batch_size=cfg.batch_size,
                                                              progress=cfg.progress)
    start = ranker_labels(anchor, lists, corpus, batch_size=cfg.batch_size, progress=cfg.progress)
    relative = {}
    for q, lab in trained.items():  # the lists in the anchor's order; the ranker's order relative to it
        order = start[q].permutation
        where = {orig: i for i, orig in enumerate(order)}
        relative[q] = Label(qid=q, cands=tuple(lab.cands[i] for i in order),
                            permutation=tuple(where[i] for i in lab.permutation), outputs=(), model=lab.model,
                            template="ranker", prompt_hash="")
    report = teacher_report(relative, qrels=qrels, queries=None if qrels is not None else queries,
                            corpus=None if qrels is not None else corpus, k=cfg.k, subject="ranker")
    return replace(report, baseline="anchor")


def check_ranker(ranker_dir, lists: Mapping[str, tuple[str, Sequence[str]]], corpus: Mapping[str, Passage],
                 cfg: RankerCheck = RankerCheck(), *, qrels=None,
                 queries: Mapping[str, Query] | None = None) -> "TeacherReport":
    """The ranker check: the ranker's order of ``lists`` against the first stage's, judged by ``qrels`` or by
    the answers of ``queries``; its ``verdict`` is the one significance rule."""
    labels = ranker_order(ranker_dir, lists, corpus, cfg)
    return _judge_order(labels, ranker_dir, corpus, cfg, qrels=qrels, queries=queries)


def check_ranker_and_anchor(ranker_dir, lists: Mapping[str, tuple[str, Sequence[str]]],
                            corpus: Mapping[str, Passage], cfg: RankerCheck = RankerCheck(), *, qrels=None,
                            queries: Mapping[str, Query] | None = None) -> tuple["TeacherReport",
                                                                                  "TeacherReport | None"]:
    """:func:`check_ranker` and :func:`check_against_anchor` together, as the pipeline's ranker check makes
    them: the ranker is loaded once and its order of ``lists`` scored once for both reports."""
    ranker = load_ranker(ranker_dir, lists, corpus, cfg)
    labels = ranker_order(ranker, lists, corpus, cfg)
    report = _judge_order(labels, ranker_dir, corpus, cfg, qrels=qrels, queries=queries)
    return report, check_against_anchor(ranker, lists, corpus, cfg, qrels=qrels, queries=queries, labels=labels)


def _judge_order(labels, ranker_dir, corpus, cfg: RankerCheck, *, qrels, queries) -> "TeacherReport":
    from intdistill.gate import teacher_report

    try:
        if qrels is not None:
            return teacher_report(labels, qrels=qrels, k=cfg.k, subject="ranker")
        return teacher_report(labels, queries=queries, corpus=corpus, k=cfg.k, subject="ranker")
    except ValueError as e:  # no judged list among them
        if isinstance(e, DataError):
            raise
        raise DataError(ranker_dir, None, f"ranker check: {e}") from None


def select_queries(queries: Mapping[str, Query], *, sample: int | None = None, seed: int = 0,
                   max_queries: int | None = None) -> dict[str, Query]:
    """``queries`` cut to a seeded random ``sample`` of N (kept in file order), then to the first
    ``max_queries``; unchanged when neither is given."""
    if sample is not None and sample < len(queries):
        import random

        keep = set(random.Random(seed).sample(list(queries), sample))
        queries = {qid: q for qid, q in queries.items() if qid in keep}
    if max_queries is not None:
        queries = dict(list(queries.items())[:max_queries])
    return dict(queries)
