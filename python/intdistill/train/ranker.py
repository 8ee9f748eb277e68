"""Stage 1: train the ranker on ranked candidate lists with ListMLE.

For each training query with candidates ``c_0..c_{n-1}`` (first-stage order) and a permutation ``π`` to
learn (the LLM's, or another label source, see :mod:`intdistill.train.sources`), the ranker
(:class:`~intdistill.models.Ranker`, which starts at the first stage's order) scores every candidate
``s_i = ranker(query, title + " " + text of c_i)`` and the loss is the top-k ListMLE
``-Σ_{i<k} [ s_π(i) - log Σ_{j>=i} exp s_π(j) ]`` with ``k`` the list's learned places (all of them, or a
gold-first list's relevant ones), averaged over the queries of a batch. Lists of different lengths are
padded and masked.

Dev evaluation (optional, every epoch): the ranker re-ranks each dev query's candidate list, and the
re-ranked lists are scored with qrels measures (``nDCG@10``, ``RR@10``) or answer measures (``Acc@1``,
``Acc@5``: a passage contains an answer string).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from intdistill.data import DataError, Passage, Query
from intdistill.losses import listmle
from intdistill.train.loop import Stage, TrainConfig, TrainResult, forward_chunk_size, train
from intdistill.train.sources import RankedList



@dataclass(frozen=True)
class RerankDev:
    """A dev set for stage 1: candidate lists to re-rank and how to judge them.

    ``lists``: ``qid -> (query text, candidate ids in first-stage order)``. Judged by ``qrels`` when given,
    else by the ``answers`` of ``queries``. ``measures``: names as in :mod:`intdistill.metrics`.
    """

    lists: Mapping[str, tuple[str, tuple[str, ...]]]
    measures: tuple[str, ...]
    qrels: Mapping[str, Mapping[str, int]] | None = None
    queries: Mapping[str, Query] | None = None

    def run(self, scores: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float]]:
        """``{qid: {docid: score}}`` from per-list scores in candidate order."""
        return {q: dict(zip(self.lists[q][1], map(float, scores[q]))) for q in self.lists}

    def _evaluation(self, run: Mapping[str, Mapping[str, float]], corpus: Mapping[str, Passage]):
        from intdistill.metrics import evaluate

        queries = {q: self.queries[q] for q in self.lists} if self.queries is not None else None
        qrels = {q: self.qrels[q] for q in self.lists} if self.qrels is not None else None  # judged dev lists only
        return evaluate(qrels, run, self.measures, queries=queries, corpus=corpus)

    def evaluate(self, run: Mapping[str, Mapping[str, float]], corpus: Mapping[str, Passage]) -> dict[str, float]:
        return dict(self._evaluation(run, corpus).mean)

    def first_stage_run(self) -> dict[str, dict[str, float]]:
        """The first-stage order itself (no ranker), as a run."""
        return self.run({q: [-float(i) for i in range(len(c))] for q, (_, c) in self.lists.items()})

    def baseline(self, corpus: Mapping[str, Passage]) -> dict[str, float]:
        """The measures of the first-stage order itself (no ranker): the number to beat."""
        return self.evaluate(self.first_stage_run(), corpus)

    def judge(self, scores: Mapping[str, Sequence[float]], corpus: Mapping[str, Passage], *,
              n_resamples: int = 10000):
        """A ranker's order of the dev lists (its ``scores``) against the first stage's on the first measure:
        a :class:`intdistill.significance.PairedTest` (``delta`` = ranker - first stage; ``.verdict()``)."""
        from intdistill.significance import paired_test

        m = self.measures[0]
        first = self._evaluation(self.first_stage_run(), corpus).per_query
        ours = self._evaluation(self.run(scores), corpus).per_query
        return paired_test({q: v[m] for q, v in first.items()}, {q: v[m] for q, v in ours.items()},
                           n_resamples=n_resamples)


def rerank_dev(
    lists: Mapping[str, tuple[str, Sequence[str]]],
    corpus: Mapping[str, Passage],
    *,
    qrels: Mapping[str, Mapping[str, int]] | None = None,
    queries: Mapping[str, Query] | None = None,
    metric: str | None = None,
    where: str | None = None,
) -> RerankDev:
    """Build and check a :class:`RerankDev`. With ``qrels``, lists of queries absent from them are dropped
    (they cannot be judged); with answers, every query must have answers. ``metric`` (default ``nDCG@10``
    with qrels, ``Acc@1`` with answers) comes first in the measures."""
    from intdistill.metrics import default_measures, parse_measure

    if qrels is None and queries is None:
        raise DataError(where, None, "a dev set needs judgements: dev qrels, or dev queries with 'answers'")
    kept = {}
    for q, (text, cands) in lists.items():
        missing = [d for d in cands if d not in corpus]
        if missing:
            raise DataError(where, None, f"dev query {q!r} names {len(missing)} candidate(s) not in the corpus, "
                                         f"e.g. {missing[0]!r}")
        if not text:
            raise DataError(where, None, f"dev query {q!r} has no query text: give the dev queries file")
        if qrels is not None and q not in qrels:
            continue
        if qrels is None and (q not in queries or not queries[q].answers):
            raise DataError(where, None, f"dev query {q!r} has no answer strings: expected 'answers' or dev qrels")
        kept[q] = (text, tuple(cands))
    if not kept:
        raise DataError(where, None, "expected at least one dev query with judgements, got none")
    defaults = default_measures("ranker-dev", qrels=qrels is not None)
    metric = parse_measure(metric).name if metric else defaults[0]
    if qrels is None and not metric.startswith("Acc@"):
        raise DataError(None, None, f"metric: without dev qrels only Acc@k can be computed, got {metric!r}")
    measures = tuple(dict.fromkeys((metric, *defaults)))
    return RerankDev(kept, measures, qrels, queries)


def score_lists(
    ranker, lists: Mapping[str, tuple[str, Sequence[str]]], corpus: Mapping[str, Passage], *,
    batch_size: int = 64, progress: bool = False,
) -> dict[str, list[float]]:
    """``ranker``'s logits of every candidate of ``lists`` (``qid -> (query text, candidate ids)``), as
    ``qid -> scores in candidate order``; the ranker sees ``passage.full_text()``, as in training."""
    pairs = [(text, corpus[d].full_text()) for text, cands in lists.values() for d in cands]
    flat = ranker.score_pairs(pairs, batch_size=batch_size, progress=progress)
    out, i = {}, 0
    for q, (_, cands) in lists.items():
        out[q] = flat[i : i + len(cands)].tolist()
        i += len(cands)
    return out


class RankerStage(Stage):
    """Stage 1 for :func:`intdistill.train.loop.train`: ListMLE of ``ranker`` on ``lists``."""

    name = "train-ranker"

    def __init__(self, ranker, lists: Sequence[RankedList], corpus: Mapping[str, Passage], *,
                 dev: RerankDev | None = None, score_batch_size: int = 64, forward_chunk: int | None = None,
                 progress: bool = True, train_max_length: int | None = None):
        if getattr(ranker.tokenizer, "padding_side", "right") != "right":
            raise ValueError(f"expected a tokenizer that pads on the right, got padding_side={ranker.tokenizer.padding_side!r}")
        if train_max_length is not None and (isinstance(train_max_length, bool) or not isinstance(train_max_length, int)
                                             or train_max_length < 3):
            raise ValueError(f"train_max_length: expected an int >= 3, got {train_max_length!r}")
        self.model = ranker
        self.train_max_length = train_max_length
        self._forward_chunk = forward_chunk
        self.lists: dict[str, RankedList] = {}
        for r in lists:
            if r.qid in self.lists:
                raise DataError(None, None, f"query {r.qid!r} appears twice in the training lists")
            if sorted(r.permutation) != list(range(len(r.cands))):
                raise DataError(None, None, f"query {r.qid!r}: expected a permutation of 0..{len(r.cands) - 1}, "
                                            f"got {list(r.permutation)!r:.120}")
            missing = [d for d in r.cands if d not in corpus]
            if missing:
                raise DataError(None, None, f"query {r.qid!r} names candidate {missing[0]!r}, not in the corpus")
            self.lists[r.qid] = r
        self.corpus = corpus
        self.dev = dev
        self.score_batch_size = score_batch_size
        self.progress = progress

    def examples(self) -> list[str]:
        return list(self.lists)

    @property
    def forward_chunk(self) -> int:
        """Pairs per forward pass (length-sorted chunks of a batch); None at construction = by device."""
        return self._forward_chunk or forward_chunk_size(self.model.device)

    def loss(self, qids: Sequence[str]) -> torch.Tensor:
        rows = [self.lists[q] for q in qids]
        lengths = [len(r.cands) for r in rows]
        n = max(lengths)
        logits = self.model.list_logits(
            [r.query for r in rows], [[self.corpus[d].full_text() for d in r.cands] for r in rows],
            passage_max_length=self.train_max_length, chunk=self.forward_chunk,
        ).float()  # (batch, n), right-padded
        device = logits.device
        perm = torch.full((len(rows), n), -1, dtype=torch.long)  # (batch, n), -1 = padding
        for b, r in enumerate(rows):
            perm[b, : len(r.permutation)] = torch.tensor(r.permutation)
        top = torch.tensor([len(r.cands) if r.top is None else r.top for r in rows], device=device)  # (batch,)
        lens = torch.tensor(lengths)
        mask = (torch.arange(n)[None, :] < lens[:, None]).to(device)  # (batch, n)
        return listmle(logits, perm.to(device), mask, top_k=top)

    def evaluate(self) -> dict[str, float]:
        if self.dev is None:
            return {}
        scores = self.score_lists({q: c for q, c in self.dev.lists.items()})
        return self.dev.evaluate(self.dev.run(scores), self.corpus)

    def score_lists(self, lists: Mapping[str, tuple[str, Sequence[str]]]) -> dict[str, list[float]]:
        """Ranker logits of every candidate, ``qid -> scores in candidate order`` (no gradient)."""
        return score_lists(self.model, lists, self.corpus, batch_size=self.score_batch_size, progress=self.progress)

    def fingerprint(self) -> str:
        m = self.model
        h = hashlib.sha256(json.dumps([m.name, m.max_length, m.kind, m.scale, self.train_max_length]
                                        + ([m.lexical_weight] if m.lexical_weight else [])).encode())
        for r in self.lists.values():
            h.update(json.dumps([r.qid, r.query, r.cands, r.permutation, r.top]).encode())
        return h.hexdigest()


def train_ranker(
    lists: Sequence[RankedList],
    corpus: Mapping[str, Passage],
    cfg: TrainConfig,
    *,
    kind: str | None = None,
    first_stage: str | None = None,
    model: str | None = None,
    max_length: int | None = None,
    scale: float | None = None,
    train_max_length: int | None = None,
    cache_dir: str | None = None,
    dev: RerankDev | None = None,
    lexical_weight: float = 0.0,
) -> TrainResult:
    """Stage 1 end to end: build the ranker, train it on ``lists`` and write it to ``cfg.out``.

    ``kind``: one of :data:`intdistill.models.ranker.KINDS` (None: the default, ``query-tower``);
    ``first_stage``: the first-stage retriever's checkpoint the ranker starts from (None: the bundled
    all-MiniLM-L6-v2); ``model``: a cross-encoder checkpoint for the kinds with a cross-encoder part;
    ``max_length``: the cross-encoder's pair length; ``scale``: the bi-encoder part's cosine scale (default 20);
    ``train_max_length``: a trainable passage tower's training inputs; ``cache_dir``: the first stage's corpus
    encoding cache (``intdistill candidates --cache-dir``), reused for a frozen passage tower;
    ``lexical_weight`` > 0: the ranker's lexical term (:mod:`intdistill.lexical`), BM25 fitted on ``corpus``.
    """
    from intdistill.models.ranker import DEFAULT_KIND, DEFAULT_SCALE, Ranker
    from intdistill.train.loop import resolve_device, seed_everything

    seed_everything(cfg.seed)  # a new classification head is drawn from torch's generator
    ranker = Ranker.build(kind or DEFAULT_KIND, first_stage=first_stage, cross_model=model, max_length=max_length,
                          scale=DEFAULT_SCALE if scale is None else scale, device=resolve_device(cfg.device),
                          lexical_weight=lexical_weight,
                          lexical_corpus=(p.full_text() for p in corpus.values()) if lexical_weight else None)
    needed = {d for r in lists for d in r.cands} | {d for _, c in (dev.lists.values() if dev else ()) for d in c}
    ranker.prime_corpus(corpus, needed, cache_dir=cache_dir, progress=cfg.progress)
    return train(RankerStage(ranker, lists, corpus, dev=dev, progress=cfg.progress,
                             train_max_length=train_max_length), cfg)