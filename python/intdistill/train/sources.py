"""Label sources for stage 1: which order of each candidate list the ranker learns.

One record per training query, :class:`RankedList`: the query text, its candidates in first-stage order
and a permutation of them (0-based indices into ``cands``, best first). The sources are the paper's
label-type analysis (Intermediate Distillation, arXiv 2406.12169):

==============  =========================================================================================
source          permutation of a list with first-stage order ``0, 1, ..., n-1``
==============  =========================================================================================
``llm``         the label file's permutation (the LLM's ranking)
``gold-first``  the relevant candidates first (qrels rel >= 1, or the passage contains an answer string),
                in first-stage order among themselves, then the others in first-stage order: e.g.
                relevant = {2, 5} -> ``2, 5, 0, 1, 3, 4, ...``. A list with no relevant candidate keeps
                the first-stage order (it is counted, see :class:`ListsReport`).
``source-first`` generated queries (``intdistill generate-queries``): the passage the query was written from
                first, the rest in first-stage order; when the first stage did not retrieve it, it is put
                first and the list's last candidate gives way (counted). Learns that one place under "auto".
``first-stage`` the identity ``0, 1, ..., n-1`` (the control: learn the first stage's own order)
``random``      a shuffle seeded by ``(seed, qid)``: the same query gets the same shuffle whatever the
                other queries, their order or ``max_queries``
==============  =========================================================================================

Which places of the permutation the ranker learns (``top``; ListMLE then counts only those, see
:func:`intdistill.losses.listmle`): ``"auto"`` (the default) learns a gold-first list's relevant candidates
(its first ``#relevant`` places: relevant above the rest, and nothing about the first stage's order of the
rest) and every place of the other sources' lists; a gold-first list without a relevant candidate then
teaches nothing and is left out (counted). ``"all"`` learns every place of every list (the paper's plain
ListMLE); an int ``k`` learns the first ``k`` places of every list.

Every source but ``llm`` needs only candidate lists, from a candidates file or from a label file's
``cands`` (so all sources can train on exactly the queries the LLM labelled). ``max_queries`` keeps the
first N queries in file order (the training-set-size curve).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from intdistill.data import DataError, Passage, Query

logger = logging.getLogger(__name__)

#: The label sources, in the order the CLI lists them.
LABEL_SOURCES = ("llm", "gold-first", "source-first", "first-stage", "random")


class RankedList(NamedTuple):
    """One training list: candidates in first-stage order and the order to learn."""

    qid: str
    query: str  # query text
    cands: tuple[str, ...]  # doc ids, first-stage order (best first)
    permutation: tuple[int, ...]  # indices into cands, best first (the order the ranker learns)
    top: int | None = None  # ListMLE counts the first `top` places of the permutation only (None: all)


@dataclass(frozen=True)
class ListsReport:
    """What :func:`build_lists` did: the source, how many lists, and (gold-first) how many had gold."""

    source: str
    n_lists: int
    n_candidates: int  # candidates over all lists
    n_without_relevant: int = 0  # gold-first: lists with no relevant candidate
    judged_by: str = ""  # gold-first: "qrels" or "answers"
    top: str = "all"  # which places are learned: "all", "relevant" (gold-first, auto) or "first K"
    n_left_out: int = 0  # lists that teach nothing under `top` (gold-first without a relevant candidate)
    n_inserted: int = 0  # source-first: lists whose source passage the first stage missed (put first)

    def line(self) -> str:
        s = f"label source {self.source}: {self.n_lists} lists, {self.n_candidates} candidates; learns {self.top} places"
        if self.source == "gold-first":
            fate = "left out (nothing to learn)" if self.n_left_out else "kept in first-stage order"
            s += f"; judged by {self.judged_by}; {self.n_without_relevant} lists without a relevant candidate {fate}"
        if self.source == "source-first":
            s += f"; {self.n_inserted} source passages missed by the first stage were put first"
        return s


# ------------------------------------------------------------------------------------ permutations


def first_stage_permutation(n: int) -> tuple[int, ...]:
    """The identity ``(0, 1, ..., n-1)``: the first stage's own order."""
    return tuple(range(n))


def gold_first_permutation(relevant: Sequence[bool]) -> tuple[int, ...]:
    """Relevant candidates first, then the rest, each group in first-stage order.

    ``relevant[i]`` says whether candidate ``i`` (first-stage position) is relevant.
    ``gold_first_permutation([False, False, True, False, True])`` is ``(2, 4, 0, 1, 3)``.
    """
    flags = [bool(r) for r in relevant]
    return tuple([i for i, r in enumerate(flags) if r] + [i for i, r in enumerate(flags) if not r])


def random_permutation(n: int, seed: int, qid: str) -> tuple[int, ...]:
    """A uniform shuffle of ``range(n)`` from ``random.Random(f"{seed}:{qid}")`` (stable across runs and
    Python versions: a str seed is hashed with SHA-512, not with the salted ``hash``)."""
    perm = list(range(n))
    random.Random(f"{seed}:{qid}").shuffle(perm)
    return tuple(perm)


# ------------------------------------------------------------------------------------ building lists


def build_lists(
    source: str,
    lists: Mapping[str, Sequence[str]],
    corpus: Mapping[str, Passage],
    query_texts: Mapping[str, str],
    *,
    permutations: Mapping[str, Sequence[int]] | None = None,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    queries: Mapping[str, Query] | None = None,
    seed: int = 0,
    max_queries: int | None = None,
    top: int | str | None = "auto",
    sources: Mapping[str, str] | None = None,
    where: str | None = None,
) -> tuple[list[RankedList], ListsReport]:
    """Training lists for ``source`` (one of :data:`LABEL_SOURCES`).

    Args:
        lists: ``qid -> candidate ids in first-stage order``, in file order (a label or candidates file).
        corpus: every candidate id must be in it.
        query_texts: ``qid -> query text``; every kept query must have one.
        permutations: ``llm`` only: ``qid -> permutation`` (the label file's), same keys as ``lists``.
        qrels: ``gold-first``: judgements; a candidate is relevant when ``rel >= 1``.
        queries: ``gold-first`` without ``qrels``: queries with ``answers``; a candidate is relevant when
            its passage text contains an answer (DPR has-answer, ``intdistill._core.has_answer``).
        seed: ``random`` only.
        max_queries: keep the first N queries of ``lists`` (file order); None keeps all.
        top: the places learned: ``"auto"``, ``"all"`` (or None) or an int >= 1 (see the module docstring).
        sources: ``source-first``: ``qid -> the passage the query was written from`` (in the corpus).
        where: the file the lists came from, named in errors.

    Raises:
        DataError: an unknown source, a missing input the source needs, a query that qrels/answers do not
            judge, an id that names nothing (candidate not in the corpus, query without text), or an
            empty selection.
    """
    if source not in LABEL_SOURCES:
        raise DataError(None, None, f"label source: expected one of {', '.join(LABEL_SOURCES)}, got {source!r}")
    if max_queries is not None and (isinstance(max_queries, bool) or not isinstance(max_queries, int) or max_queries < 1):
        raise DataError(None, None, f"max_queries: expected a positive int, got {max_queries!r}")
    top = parse_top(top)
    qids = list(lists)[:max_queries] if max_queries is not None else list(lists)
    if not qids:
        raise DataError(where, None, "expected at least one query to train on, got none")
    for qid in qids:
        cands = lists[qid]
        if not cands:
            raise DataError(where, None, f"query {qid!r}: expected at least one candidate, got none")
        missing = [d for d in cands if d not in corpus]
        if missing:
            raise DataError(where, None, f"query {qid!r} names {len(missing)} candidate(s) not in the corpus, "
                                         f"e.g. {missing[0]!r}")
        if not query_texts.get(qid):
            raise DataError(where, None, f"query {qid!r} has no query text: give a queries file that holds it")

    n_without = 0
    judged_by = ""
    if source == "llm":
        if permutations is None:
            raise DataError(None, None, "label source 'llm' needs LLM labels (--labels FILE), got none")
        perms = {q: tuple(int(i) for i in permutations[q]) for q in qids}
        for q in qids:
            if sorted(perms[q]) != list(range(len(lists[q]))):
                raise DataError(where, None, f"query {q!r}: expected a permutation of 0..{len(lists[q]) - 1}, "
                                             f"got {list(perms[q])!r:.120}")
    elif source == "source-first":
        if sources is None:
            raise DataError(None, None, "label source 'source-first' needs generated queries that name their "
                                        "source passage (--queries from `intdistill generate-queries`)")
        lists = dict(lists)
        inserted = 0
        for q in qids:
            src = sources.get(q)
            if src is None or src not in corpus:
                raise DataError(where, None, f"source-first: query {q!r} names no source passage in the corpus "
                                             f"(got {src!r}); expected generated queries with 'source'")
            if src not in lists[q]:
                lists[q] = [src, *list(lists[q])[: max(len(lists[q]) - 1, 0)]]
                inserted += 1
        relevant = {q: [d == sources[q] for d in lists[q]] for q in qids}
        perms = {q: gold_first_permutation(relevant[q]) for q in qids}
        judged_by = "the source passages"
    elif source == "first-stage":
        perms = {q: first_stage_permutation(len(lists[q])) for q in qids}
    elif source == "random":
        perms = {q: random_permutation(len(lists[q]), seed, q) for q in qids}
    else:  # gold-first
        relevant, judged_by = _relevance(qids, lists, corpus, qrels, queries, where)
        perms = {q: gold_first_permutation(relevant[q]) for q in qids}
        n_without = sum(1 for q in qids if not any(relevant[q]))
    if isinstance(top, int):
        tops, what = {q: top for q in qids}, f"the first {top}"
    elif top == "auto" and source in ("gold-first", "source-first"):
        tops, what = {q: sum(relevant[q]) for q in qids}, "the relevant candidates'"
    else:
        tops, what = {q: None for q in qids}, "all"
    kept = [q for q in qids if tops[q] != 0]
    if not kept:
        raise DataError(where, None, f"none of the {len(qids)} lists has a relevant candidate to learn")
    out = [RankedList(q, query_texts[q], tuple(lists[q]), perms[q], tops[q]) for q in kept]
    report = ListsReport(source, len(out), sum(len(r.cands) for r in out), n_without, judged_by, what,
                         len(qids) - len(kept), inserted if source == "source-first" else 0)
    return out, report


def parse_top(top: int | str | None) -> int | str:
    """``"auto"``, ``"all"`` (None too) or an int >= 1 (a numeric string too, as the CLI gives it)."""
    if top is None or top == "all":
        return "all"
    if top == "auto":
        return "auto"
    if isinstance(top, str) and top.isdigit():
        top = int(top)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise DataError(None, None, f"listmle top: expected 'auto', 'all' or an int >= 1, got {top!r}")
    return top


def _relevance(qids, lists, corpus, qrels, queries, where) -> tuple[dict[str, list[bool]], str]:
    """``qid -> [is candidate i relevant]`` from qrels (preferred) or answer strings."""
    if qrels is not None:
        unjudged = [q for q in qids if q not in qrels]
        if unjudged:
            raise DataError(where, None, f"gold-first: {len(unjudged)} of {len(qids)} queries have no judgements "
                                         f"in the qrels, e.g. {unjudged[0]!r}: expected qrels for the training queries")
        return {q: [qrels[q].get(d, 0) >= 1 for d in lists[q]] for q in qids}, "qrels"
    if queries is not None:
        unanswered = [q for q in qids if q not in queries or not queries[q].answers]
        if unanswered:
            raise DataError(where, None, f"gold-first: {len(unanswered)} of {len(qids)} queries have no answer "
                                         f"strings, e.g. {unanswered[0]!r}: expected 'answers' for every query")
        from intdistill import _core

        hits = _core.has_answer([[corpus[d].text for d in lists[q]] for q in qids],
                                [list(queries[q].answers) for q in qids])
        return {q: [bool(h) for h in hs] for q, hs in zip(qids, hits)}, "answers"
    raise DataError(None, None, "label source 'gold-first' needs judgements: --qrels FILE, or a queries file "
                                "with 'answers'")
