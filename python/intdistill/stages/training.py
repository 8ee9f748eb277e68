"""The two training stages: the ranker (stage 1, ``intdistill train-ranker``) and the retriever (stage 2,
``intdistill train-retriever``).

Both configurations share :class:`TrainOptions` (optimizer, schedule, checkpoints), each with its own
defaults, chosen on held-out SciFact training data (``scripts/scifact-tune.sh``). :func:`train_ranker` and
:func:`train_retriever` load their data (once per run inside :func:`intdistill.loaded.shared`), train, write
the model to ``out`` and return the :class:`~intdistill.train.loop.TrainResult`; progress and diagnostics go
to stderr. Under ``torchrun`` every process runs the same function; rank 0 alone writes.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

from intdistill.data import DataError
from intdistill.stages.config import StageConfig, non_negative_float, option, positive_float, positive_int

logger = logging.getLogger(__name__)

TRAINING = "training"
RANKER = "the ranker"
DEV_RANKER = "dev evaluation (re-rank dev candidate lists each epoch, keep the best)"
DEV_RETRIEVER = "dev evaluation (retrieval over the whole corpus each epoch, keep the best)"


def _lr(default: float):
    return option(default, f"peak AdamW learning rate (default {default})", type=float, group=TRAINING)


def _epochs(default: int):
    return option(default, f"passes over the training queries (default {default})", type=positive_int, group=TRAINING)


def _batch(default: int):
    return option(default, f"queries per forward/backward pass (default {default})", type=positive_int,
                  group=TRAINING)


@dataclass(frozen=True)
class TrainOptions(StageConfig):
    """What both training stages share: :class:`intdistill.train.loop.TrainConfig`'s knobs."""

    epochs: int = _epochs(3)
    lr: float = _lr(2e-5)
    head_lr: float | None = option(None, "peak lr of a task head new to the checkpoint, e.g. a ranker's classifier "
                                         "(default: --lr)", type=float, group=TRAINING)
    batch_size: int = _batch(8)
    grad_accum: int = option(1, "passes accumulated per optimizer step (default 1)", type=positive_int, group=TRAINING)
    warmup_ratio: float = option(0.1, "share of steps warming the lr up (default 0.1)", type=float, group=TRAINING)
    weight_decay: float = option(0.01, "AdamW weight decay (default 0.01)", type=float, group=TRAINING)
    max_grad_norm: float = option(1.0, "gradient norm clip; 0 = none (default 1.0)", type=float, group=TRAINING)
    seed: int = option(0, "random seed (default 0)", type=int, group=TRAINING)
    device: str = option("auto", "auto (cuda when available, else cpu), cpu, cuda, cuda:1, ...", group=TRAINING)
    threads: int | None = option(None, "torch CPU threads (default: torch's choice; 1 is fastest on a machine busy "
                                       "with other work)", type=positive_int, group=TRAINING)
    precision: str = option("auto", "auto: bf16/fp16 autocast on CUDA, fp32 on CPU (default auto)",
                            choices=("auto", "fp32", "bf16", "fp16"), group=TRAINING)
    eval_every: int = option(1, "dev evaluation every N epochs; 0 = never (default 1)", type=int, group=TRAINING)
    metric: str | None = option(None, "dev measure picking the best epoch (default nDCG@10 with dev qrels, else "
                                      "Acc@k)", group=TRAINING)
    keep_checkpoints: int = option(2, "epoch checkpoints kept (default 2)", type=positive_int, group=TRAINING)
    resume: bool | None = option(None, "resume from the newest checkpoint in --out (default: when there is one); "
                                       "--no-resume deletes the old checkpoints and starts over", type=bool,
                                 group=TRAINING)
    no_progress: bool = option(False, "no progress bars", group=TRAINING)

    def train_config(self, metric: str):
        """:class:`intdistill.train.loop.TrainConfig` of these options; a bad value is a DataError naming it."""
        from intdistill.train.loop import TrainConfig

        try:
            return TrainConfig(
                out=self.out, epochs=self.epochs, lr=self.lr, head_lr=self.head_lr, batch_size=self.batch_size,
                grad_accum=self.grad_accum, warmup_ratio=self.warmup_ratio, weight_decay=self.weight_decay,
                max_grad_norm=self.max_grad_norm, seed=self.seed, device=self.device, precision=self.precision,
                eval_every=self.eval_every, metric=metric, keep_checkpoints=self.keep_checkpoints,
                resume=self.resume, progress=not self.no_progress,
            )
        except ValueError as e:
            raise DataError(None, None, str(e)) from None

    def set_threads(self) -> None:
        """Apply ``threads`` (torch's intra-op CPU threads) to this process."""
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)


def _ranker_defaults():
    from intdistill.models.kinds import DEFAULT_KIND, DEFAULT_SCALE, KINDS
    from intdistill.train.sources import LABEL_SOURCES

    return (tuple(KINDS), DEFAULT_KIND, "; ".join(f"{k}: {v.about}" for k, v in KINDS.items()), DEFAULT_SCALE,
            LABEL_SOURCES)


_KINDS, _DEFAULT_KIND, _KINDS_ABOUT, _SCALE, _LABEL_SOURCES = _ranker_defaults()


@dataclass(frozen=True)
class TrainRankerConfig(TrainOptions):
    """``intdistill train-ranker``: stage 1, ListMLE on ranked candidate lists."""

    command = "train-ranker"
    # the query-tower ranker's settings, chosen on held-out SciFact training lists
    epochs: int = _epochs(2)
    lr: float = _lr(1e-4)
    batch_size: int = _batch(16)
    corpus: str = option(help="corpus: JSONL, BEIR directory or SQuAD JSON", required=True)
    out: str = option(help="output directory (the trained ranker, checkpoints/, best/)", required=True)
    label_source: str = option("llm", "which order to learn (default llm)", choices=_LABEL_SOURCES)
    labels: str | None = option(None, "LLM labels JSONL (from `intdistill label`, or the shared format)")
    candidates: str | None = option(None, "candidates JSONL (from `intdistill candidates`); stands in for --labels "
                                          "with any source but llm")
    queries: str | None = option(None, "queries file: query texts when the labels hold none; answers for gold-first")
    qrels: str | None = option(None, "judgements for gold-first (TREC or BEIR TSV)")
    max_queries: int | None = option(None, "train on the first N queries of the file", type=positive_int)
    kind: str = option(_DEFAULT_KIND, f"what trains (default {_DEFAULT_KIND}): {_KINDS_ABOUT}", choices=_KINDS,
                       group=RANKER)
    retriever: str | None = option(None, "the first-stage retriever the ranker starts from: directory or hub name "
                                         "(default: the bundled all-MiniLM-L6-v2, as `intdistill candidates` uses)",
                                   group=RANKER)
    model: str | None = option(None, "cross-encoder checkpoint for the kinds with a cross-encoder part: directory "
                                     "or hub name (default: the --retriever's weights with a new head)", group=RANKER)
    max_length: int | None = option(None, "tokens per (query, passage) pair of the cross-encoder part (default 256)",
                                    type=positive_int, group=RANKER)
    scale: float = option(_SCALE, f"the bi-encoder part's logit = scale x cosine (default {_SCALE:g})", type=float,
                          group=RANKER)
    lexical_weight: float = option(0.0, "weight of the ranker's lexical term: w x BM25 (fitted on --corpus) / the "
                                        "query's bound, in [0, 1). 0 (the default): none", type=non_negative_float,
                                   group=RANKER)
    train_max_length: int | None = option(None, "tokens per passage in the training passes of a trainable passage "
                                                "tower (twin; default: the retriever's own). Scoring always uses "
                                                "the full length", type=positive_int, group=RANKER)
    listmle_top: str = option("auto", "places of each label learned by ListMLE: auto (a gold-first list's relevant "
                                      "candidates, every place of other sources), all (the paper's plain ListMLE) "
                                      "or K (default auto)", group=RANKER)
    cache_dir: str | None = option(None, "the first stage's corpus encoding cache (`candidates --cache-dir`), reused "
                                         "by a frozen passage tower", group=RANKER)
    dev_candidates: str | None = option(None, "dev candidates JSONL (or a label file: its cands)", group=DEV_RANKER)
    dev_qrels: str | None = option(None, "dev judgements (TREC or BEIR TSV)", group=DEV_RANKER)
    dev_queries: str | None = option(None, "dev queries: texts, and answers when there are no dev qrels",
                                     group=DEV_RANKER)


@dataclass(frozen=True)
class TrainRetrieverConfig(TrainOptions):
    """``intdistill train-retriever``: stage 2, the frozen ranker distilled into the retriever (KL over mined
    candidates)."""

    command = "train-retriever"
    epochs: int = _epochs(2)
    lr: float = _lr(2e-5)
    batch_size: int = _batch(8)
    ranker: str = option(help="the trained ranker directory (from train-ranker): the teacher", required=True)
    queries: str = option(help="training queries: JSONL or BEIR directory (texts only)", required=True)
    corpus: str = option(help="corpus: JSONL, BEIR directory or SQuAD JSON", required=True)
    out: str = option(help="output directory (the trained retriever, checkpoints/, best/)", required=True)
    qrels: str | None = option(None, "keep only the --queries judged here (e.g. qrels/train.tsv); the judgements "
                                     "themselves are not used")
    extra_queries: tuple[str, ...] = option((), "more (unlabelled) training queries", repeat=True, metavar="FILE")
    max_queries: int | None = option(None, "train on the first N queries", type=positive_int)
    retriever: str | None = option(None, "starting retriever: directory or hub name (default: bundled "
                                         "all-MiniLM-L6-v2)")
    n_candidates: int = option(10, "mined passages per query (default 10)", type=positive_int)
    refresh: int = option(1, "re-mine every N epochs (default 1)", type=positive_int)
    tau_student: float = option(0.05, "temperature of the student's dot products (default 0.05)", type=positive_float)
    tau_teacher: float = option(1.0, "temperature of the ranker's logits (default 1.0)", type=positive_float)
    max_length: int | None = option(None, "tokens per text in the training passes (default: the retriever's own, "
                                          "256 for MiniLM); mining and the saved model keep the retriever's own",
                                    type=positive_int)
    dropout: bool | None = option(None, "dropout in the student's training passes (default off: a teacher that only "
                                        "repeats the student then teaches nothing)", type=bool)
    cache_dir: str | None = option(None, "passage embeddings of the starting retriever, shared with `intdistill "
                                         "candidates --cache-dir` (skips the first corpus pass when already there)")
    teacher_cache: str | None = option(None, "SQLite cache of ranker scores (default OUT/teacher_scores.sqlite)")
    ray: str | None = option(None, "encode the corpus for mining and dev retrieval on Ray workers (auto: the "
                                   "running cluster; alone: a Ray on this machine); needs intdistill[distributed]",
                             nargs="?", const="local", metavar="ADDRESS")
    dev_qrels: str | None = option(None, "dev judgements; dev queries = those judged here", group=DEV_RETRIEVER)
    dev_queries: str | None = option(None, "dev queries (default: --queries); with answers and no --dev-qrels, Acc@k",
                                     group=DEV_RETRIEVER)


def read_lists(path: str):
    """``qid -> (query text, cands)`` and ``qid -> permutation`` (None for a candidates file) from a label
    or candidates JSONL: a line with ``scores`` is a candidates file, one with ``permutation``/``output`` labels."""
    from intdistill.data import iter_jsonl

    first = next((obj for _, obj in iter_jsonl(path)), None)
    if first is not None and "scores" in first and "permutation" not in first and "output" not in first:
        from intdistill.candidates import Candidates

        cands = Candidates.load(path)
        return {q: (c.query, c.docids) for q, c in cands.items()}, None
    from intdistill.labels import load_labels

    labels = load_labels(path)
    return {q: ("", lab.cands) for q, lab in labels.items()}, {q: lab.permutation for q, lab in labels.items()}


def with_query_texts(lists, queries, path, what: str):
    """``lists`` (from :func:`read_lists`) with each query's text from ``queries`` where it has one, else the
    list's own; a query with neither is a DataError naming ``path`` (``what``: which lists, for the message)."""
    out = {}
    for q, (text, cands) in lists.items():
        if queries is not None and q in queries:
            text = queries[q].text
        if not text:
            hint = "it is not in the --queries file" if queries is not None else "give --queries"
            raise DataError(path, None, f"{what} query {q!r} has no query text ({hint})")
        out[q] = (text, cands)
    return out


def train_ranker(cfg: TrainRankerConfig):
    """Stage 1 of ``cfg``: build the training lists from its label source, train, write the ranker to ``out``.
    With dev lists, the best epoch is kept and judged against the first stage by the one significance rule."""
    from intdistill import data
    from intdistill.train.sources import build_lists

    if cfg.label_source == "llm" and not cfg.labels:
        raise DataError(None, None, "--label-source llm needs --labels FILE (for other sources, --candidates works too)")
    if cfg.labels and cfg.candidates:
        raise DataError(None, None, "give --labels or --candidates, not both")
    source_path = cfg.labels or cfg.candidates
    if not source_path:
        raise DataError(None, None, f"--label-source {cfg.label_source} needs --candidates FILE or --labels FILE")
    if cfg.label_source == "gold-first" and not cfg.qrels and not cfg.queries:
        raise DataError(None, None, "--label-source gold-first needs --qrels, or --queries with answers")
    if cfg.label_source == "source-first" and not cfg.queries:
        raise DataError(None, None, "--label-source source-first needs --queries: the generated queries file "
                                    "(`intdistill generate-queries`), whose lines name their source passage")

    corpus = data.load_corpus(cfg.corpus)
    queries = data.load_queries(cfg.queries) if cfg.queries else None
    qrels = data.load_qrels(cfg.qrels) if cfg.qrels else None
    raw, perms = read_lists(source_path)
    if cfg.labels and perms is None:
        raise DataError(cfg.labels, None, "expected a label file (lines with 'permutation' or 'output'), "
                                          "got a candidates file: pass it as --candidates")
    if cfg.label_source == "llm" and perms is None:
        raise DataError(source_path, None, "--label-source llm needs LLM labels, got a candidates file")
    if cfg.max_queries is not None:
        raw = dict(list(raw.items())[: cfg.max_queries])
    raw = with_query_texts(raw, queries, source_path, "training")
    lists, report = build_lists(
        cfg.label_source, {q: c for q, (_, c) in raw.items()}, corpus, {q: t for q, (t, _) in raw.items()},
        permutations=perms, qrels=qrels, queries=queries, seed=cfg.seed, top=cfg.listmle_top, where=source_path,
        sources=data.load_sources(cfg.queries) if cfg.label_source == "source-first" else None,
    )
    print(report.line(), file=sys.stderr)

    dev = None
    if cfg.dev_candidates:
        from intdistill.train.ranker import rerank_dev

        dev_queries = data.load_queries(cfg.dev_queries) if cfg.dev_queries else None
        dev_qrels = data.load_qrels(cfg.dev_qrels) if cfg.dev_qrels else None
        dev_lists = with_query_texts(read_lists(cfg.dev_candidates)[0], dev_queries, cfg.dev_candidates, "dev")
        try:
            dev = rerank_dev(dev_lists, corpus, qrels=dev_qrels, queries=dev_queries, metric=cfg.metric,
                             where=cfg.dev_candidates)
        except ValueError as e:
            if isinstance(e, DataError):
                raise
            raise DataError(None, None, str(e)) from None
        base = dev.baseline(corpus)
        print(f"dev: {len(dev.lists)} lists; first-stage order: "
              + ", ".join(f"{k} {v:.4f}" for k, v in base.items()), file=sys.stderr)
    elif cfg.dev_qrels or cfg.dev_queries:
        raise DataError(None, None, "--dev-qrels/--dev-queries need --dev-candidates (the lists to re-rank)")

    tcfg = cfg.train_config(dev.measures[0] if dev is not None else (cfg.metric or "nDCG@10"))
    cfg.set_threads()
    from intdistill.train.ranker import train_ranker as train

    result = train(lists, corpus, tcfg, kind=cfg.kind, first_stage=cfg.retriever, model=cfg.model,
                   max_length=cfg.max_length, scale=cfg.scale, train_max_length=cfg.train_max_length,
                   cache_dir=cfg.cache_dir, dev=dev, lexical_weight=cfg.lexical_weight)
    best = (f"; best epoch {result.best_epoch} ({tcfg.metric} {result.best_metric:.4f})"
            if result.best_epoch is not None else "")
    print(f"ranker trained: {result.epochs} epochs, {result.steps} steps{best} -> {result.out}", file=sys.stderr)
    if dev is not None and result.best_metric is not None and int(os.environ.get("RANK", "0")) == 0:
        _judge_dev(result.out, dev, corpus, tcfg.metric, cfg)
    return result


def _judge_dev(out, dev, corpus, metric: str, cfg: TrainRankerConfig) -> None:
    """The trained ranker (its best epoch, which is what ``out`` holds) against the first stage on the dev
    lists, by the one significance rule; a significantly worse ranker gets a warning."""
    from intdistill.models import Ranker
    from intdistill.train.ranker import score_lists

    ranker = Ranker.load(out, device=None if cfg.device == "auto" else cfg.device)
    if cfg.cache_dir:
        ranker.prime_corpus(corpus, (d for _, c in dev.lists.values() for d in c), cache_dir=cfg.cache_dir)
    test = dev.judge(score_lists(ranker, dev.lists, corpus), corpus)
    verdict = test.verdict()
    print(f"dev: the ranker vs the first stage on {test.n} lists: {metric} {test.mean_a:.4f} -> {test.mean_b:.4f} "
          f"({test.delta:+.4f}, p={test.p_value:.3g}): {verdict}", file=sys.stderr)
    if verdict == "worse":
        print("!" * 78 + f"\nWARNING: the ranker re-ranks the dev lists WORSE than their first-stage order "
              f"({metric} {test.mean_b:.4f} vs {test.mean_a:.4f}, p={test.p_value:.3g}). As the teacher of "
              "train-retriever it is likely to make the retriever worse: train it longer or on more queries, "
              "or start from a stronger --model.\n" + "!" * 78, file=sys.stderr)


def train_retriever(cfg: TrainRetrieverConfig):
    """Stage 2 of ``cfg``: distil the ranker at ``cfg.ranker`` into the retriever over every training query."""
    from intdistill import data
    from intdistill.models import Ranker
    from intdistill.train.loop import resolve_device
    from intdistill.train.retriever import retrieval_dev
    from intdistill.train.retriever import train_retriever as train

    corpus = data.load_corpus(cfg.corpus)
    all_queries = data.load_queries(cfg.queries)
    queries = dict(all_queries)
    if cfg.qrels:
        qrels = data.load_qrels(cfg.qrels)
        unknown = [q for q in qrels if q not in all_queries]
        if unknown:
            raise DataError(cfg.qrels, None, f"{len(unknown)} judged queries are not in {cfg.queries}, "
                                             f"e.g. {unknown[0]!r}")
        queries = {q: v for q, v in all_queries.items() if q in qrels}
    for path in cfg.extra_queries:
        for q, v in data.load_queries(path).items():
            if q in queries and queries[q].text != v.text:
                raise DataError(path, None, f"query {q!r} is already a training query with another text")
            queries[q] = v
    if cfg.max_queries is not None:
        queries = dict(list(queries.items())[: cfg.max_queries])
    if not queries:
        raise DataError(cfg.queries, None, "expected at least one training query, got none")
    if cfg.n_candidates > len(corpus):
        raise DataError(cfg.corpus, None, f"--n-candidates {cfg.n_candidates}: expected at most the corpus size "
                                          f"{len(corpus)}")

    dev = None
    if cfg.dev_qrels or cfg.dev_queries:
        dev_queries = data.load_queries(cfg.dev_queries) if cfg.dev_queries else all_queries
        dev_qrels = data.load_qrels(cfg.dev_qrels) if cfg.dev_qrels else None
        try:
            dev = retrieval_dev(dev_queries, qrels=dev_qrels, metric=cfg.metric,
                                where=cfg.dev_qrels or cfg.dev_queries)
        except ValueError as e:
            if isinstance(e, DataError):
                raise
            raise DataError(None, None, str(e)) from None
        overlap = sum(1 for q in dev.queries if q in queries)
        if overlap:
            logger.warning("%d dev queries are also training queries: the dev numbers are optimistic", overlap)

    tcfg = cfg.train_config(dev.measures[0] if dev is not None else (cfg.metric or "nDCG@10"))
    cfg.set_threads()
    ranker = Ranker.load(cfg.ranker, device=resolve_device(tcfg.device))
    print(f"distilling {cfg.ranker} into {cfg.retriever or 'all-MiniLM-L6-v2'}: {len(queries)} queries x "
          f"{cfg.n_candidates} candidates from {len(corpus)} passages", file=sys.stderr)
    result = train(
        ranker, queries, corpus, tcfg, retriever=cfg.retriever, n_candidates=cfg.n_candidates,
        refresh=cfg.refresh, tau_student=cfg.tau_student, tau_teacher=cfg.tau_teacher,
        cache_path=cfg.teacher_cache, dev=dev, train_max_length=cfg.max_length, cache_dir=cfg.cache_dir,
        ray=cfg.ray, dropout=cfg.dropout is True,
    )
    best = (f"; best epoch {result.best_epoch} ({tcfg.metric} {result.best_metric:.4f})"
            if result.best_epoch is not None else "")
    print(f"retriever trained: {result.epochs} epochs, {result.steps} steps{best} -> {result.out}", file=sys.stderr)
    return result
