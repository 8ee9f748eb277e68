"""Stage 1: train the ranker with ListMLE on ranked candidate lists.

The ranker (--kind) starts where the first stage (--retriever) is: at step 0 it orders every list as the
first stage does, so training can only add what the labels teach. The default, query-tower, trains a copy
of the first stage's query encoder against its frozen passage embeddings.

The order learned comes from --label-source: llm (the LLM's permutations in --labels), gold-first
(relevant candidates first, by --qrels or the answers in --queries), source-first (generated queries: the
passage each was written from first; --queries from `intdistill generate-queries`), first-stage (the
candidates' own order, a control) or random (a seeded shuffle). Sources other than llm read candidate lists from
--candidates or from the cands of --labels (to train on exactly the queries the LLM labelled).
The trained ranker is written to --out (intdistill's Ranker.load restores it; its trainable part loads
with sentence_transformers), with checkpoints/ (a rerun resumes), best/ and metrics.jsonl.
"""

from __future__ import annotations

import argparse
import os
import sys

from intdistill.commands.common import positive_int, read_lists, with_query_texts


def add_train_args(parser: argparse.ArgumentParser, *, lr: float = 2e-5, epochs: int = 3, batch_size: int = 8) -> None:
    """The TrainConfig flags both training commands share."""
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=epochs, help=f"passes over the training queries (default {epochs})")
    g.add_argument("--lr", type=float, default=lr, help=f"peak AdamW learning rate (default {lr})")
    g.add_argument("--head-lr", type=float, default=None,
                   help="peak lr of a task head new to the checkpoint, e.g. a ranker's classifier (default: --lr)")
    g.add_argument("--batch-size", type=positive_int, default=batch_size,
                   help=f"queries per forward/backward pass (default {batch_size})")
    g.add_argument("--grad-accum", type=positive_int, default=1,
                   help="passes accumulated per optimizer step (default 1)")
    g.add_argument("--warmup-ratio", type=float, default=0.1, help="share of steps warming the lr up (default 0.1)")
    g.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    g.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient norm clip; 0 = none (default 1.0)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:1, ...")
    g.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is fastest on a machine busy with other work)")
    g.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="auto: bf16/fp16 autocast on CUDA, fp32 on CPU (default auto)")
    g.add_argument("--eval-every", type=int, default=1, help="dev evaluation every N epochs; 0 = never (default 1)")
    g.add_argument("--metric", default=None,
                   help="dev measure picking the best epoch (default nDCG@10 with dev qrels, else Acc@k)")
    g.add_argument("--keep-checkpoints", type=positive_int, default=2, help="epoch checkpoints kept (default 2)")
    g.add_argument("--resume", action=argparse.BooleanOptionalAction, default=None,
                   help="resume from the newest checkpoint in --out (default: when there is one); "
                        "--no-resume deletes the old checkpoints and starts over")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def set_threads(args) -> None:
    """Apply --threads (torch's intra-op CPU threads) to this process."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def train_config(args, metric: str):
    """TrainConfig from the parsed flags; a bad value is a DataError naming it (exit code 2)."""
    from intdistill.data import DataError
    from intdistill.train.loop import TrainConfig

    try:
        return TrainConfig(
            out=args.out, epochs=args.epochs, lr=args.lr, head_lr=args.head_lr, batch_size=args.batch_size, grad_accum=args.grad_accum,
            warmup_ratio=args.warmup_ratio, weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
            seed=args.seed, device=args.device, precision=args.precision, eval_every=args.eval_every,
            metric=metric, keep_checkpoints=args.keep_checkpoints, resume=args.resume, progress=not args.no_progress,
        )
    except ValueError as e:
        raise DataError(None, None, str(e)) from None


def configure(parser: argparse.ArgumentParser) -> None:
    from intdistill.train.sources import LABEL_SOURCES

    parser.add_argument("--corpus", required=True, help="corpus: JSONL, BEIR directory or SQuAD JSON")
    parser.add_argument("--out", required=True, help="output directory (the trained ranker, checkpoints/, best/)")
    parser.add_argument("--label-source", choices=LABEL_SOURCES, default="llm",
                        help="which order to learn (default llm)")
    parser.add_argument("--labels", help="LLM labels JSONL (from `intdistill label`, or the shared format)")
    parser.add_argument("--candidates", help="candidates JSONL (from `intdistill candidates`); "
                                             "stands in for --labels with any source but llm")
    parser.add_argument("--queries", help="queries file: query texts when the labels hold none; answers for gold-first")
    parser.add_argument("--qrels", help="judgements for gold-first (TREC or BEIR TSV)")
    parser.add_argument("--max-queries", type=positive_int, help="train on the first N queries of the file")
    from intdistill.models.ranker import DEFAULT_KIND, DEFAULT_SCALE, KINDS

    r = parser.add_argument_group("the ranker")
    r.add_argument("--kind", choices=tuple(KINDS), default=DEFAULT_KIND,
                   help=f"what trains (default {DEFAULT_KIND}): " + "; ".join(f"{k}: {v.about}" for k, v in KINDS.items()))
    r.add_argument("--retriever", default=None,
                   help="the first-stage retriever the ranker starts from: directory or hub name (default: the "
                        "bundled all-MiniLM-L6-v2, as `intdistill candidates` uses)")
    r.add_argument("--model", default=None,
                   help="cross-encoder checkpoint for the kinds with a cross-encoder part: directory or hub name "
                        "(default: the --retriever's weights with a new head)")
    r.add_argument("--max-length", type=positive_int, default=None,
                   help="tokens per (query, passage) pair of the cross-encoder part (default 256)")
    r.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                   help=f"the bi-encoder part's logit = scale x cosine (default {DEFAULT_SCALE:g})")
    r.add_argument("--train-max-length", type=positive_int, default=None,
                   help="tokens per passage in the training passes of a trainable passage tower (twin; default: "
                        "the retriever's own). Scoring always uses the full length")
    r.add_argument("--listmle-top", default="auto",
                   help="places of each label learned by ListMLE: auto (a gold-first list's relevant candidates, "
                        "every place of other sources), all (the paper's plain ListMLE) or K (default auto)")
    r.add_argument("--cache-dir", default=None,
                   help="the first stage's corpus encoding cache (`candidates --cache-dir`), reused by a frozen "
                        "passage tower")
    d = parser.add_argument_group("dev evaluation (re-rank dev candidate lists each epoch, keep the best)")
    d.add_argument("--dev-candidates", help="dev candidates JSONL (or a label file: its cands)")
    d.add_argument("--dev-qrels", help="dev judgements (TREC or BEIR TSV)")
    d.add_argument("--dev-queries", help="dev queries: texts, and answers when there are no dev qrels")
    # the query-tower ranker's settings, chosen on held-out SciFact training lists (scripts/scifact-tune.sh)
    add_train_args(parser, lr=1e-4, epochs=2, batch_size=16)


def run(args: argparse.Namespace) -> int:
    from intdistill import data
    from intdistill.data import DataError
    from intdistill.train.sources import build_lists

    if args.label_source == "llm" and not args.labels:
        raise DataError(None, None, "--label-source llm needs --labels FILE (for other sources, --candidates works too)")
    if args.labels and args.candidates:
        raise DataError(None, None, "give --labels or --candidates, not both")
    source_path = args.labels or args.candidates
    if not source_path:
        raise DataError(None, None, f"--label-source {args.label_source} needs --candidates FILE or --labels FILE")
    if args.label_source == "gold-first" and not args.qrels and not args.queries:
        raise DataError(None, None, "--label-source gold-first needs --qrels, or --queries with answers")
    if args.label_source == "source-first" and not args.queries:
        raise DataError(None, None, "--label-source source-first needs --queries: the generated queries file "
                                    "(`intdistill generate-queries`), whose lines name their source passage")

    corpus = data.load_corpus(args.corpus)
    queries = data.load_queries(args.queries) if args.queries else None
    qrels = data.load_qrels(args.qrels) if args.qrels else None
    raw, perms = read_lists(source_path)
    if args.labels and perms is None:
        raise DataError(args.labels, None, "expected a label file (lines with 'permutation' or 'output'), "
                                           "got a candidates file: pass it as --candidates")
    if args.label_source == "llm" and perms is None:
        raise DataError(source_path, None, "--label-source llm needs LLM labels, got a candidates file")
    if args.max_queries is not None:
        raw = dict(list(raw.items())[: args.max_queries])
    raw = with_query_texts(raw, queries, source_path, "training")
    lists, report = build_lists(
        args.label_source, {q: c for q, (_, c) in raw.items()}, corpus, {q: t for q, (t, _) in raw.items()},
        permutations=perms, qrels=qrels, queries=queries, seed=args.seed, top=args.listmle_top, where=source_path,
        sources=data.load_sources(args.queries) if args.label_source == "source-first" else None,
    )
    print(report.line(), file=sys.stderr)

    dev = None
    if args.dev_candidates:
        from intdistill.train.ranker import rerank_dev

        dev_queries = data.load_queries(args.dev_queries) if args.dev_queries else None
        dev_qrels = data.load_qrels(args.dev_qrels) if args.dev_qrels else None
        dev_lists = with_query_texts(read_lists(args.dev_candidates)[0], dev_queries, args.dev_candidates, "dev")
        try:
            dev = rerank_dev(dev_lists, corpus, qrels=dev_qrels, queries=dev_queries, metric=args.metric,
                             where=args.dev_candidates)
        except ValueError as e:
            if isinstance(e, DataError):
                raise
            raise DataError(None, None, str(e)) from None
        base = dev.baseline(corpus)
        print(f"dev: {len(dev.lists)} lists; first-stage order: "
              + ", ".join(f"{k} {v:.4f}" for k, v in base.items()), file=sys.stderr)
    elif args.dev_qrels or args.dev_queries:
        raise DataError(None, None, "--dev-qrels/--dev-queries need --dev-candidates (the lists to re-rank)")

    cfg = train_config(args, dev.measures[0] if dev is not None else (args.metric or "nDCG@10"))
    set_threads(args)
    from intdistill.train.ranker import train_ranker

    result = train_ranker(lists, corpus, cfg, kind=args.kind, first_stage=args.retriever, model=args.model,
                          max_length=args.max_length, scale=args.scale, train_max_length=args.train_max_length,
                          cache_dir=args.cache_dir, dev=dev)
    best = (f"; best epoch {result.best_epoch} ({cfg.metric} {result.best_metric:.4f})"
            if result.best_epoch is not None else "")
    print(f"ranker trained: {result.epochs} epochs, {result.steps} steps{best} -> {result.out}", file=sys.stderr)
    if dev is not None and result.best_metric is not None and int(os.environ.get("RANK", "0")) == 0:
        _judge_dev(result.out, dev, corpus, cfg.metric, args)
    return 0


def _judge_dev(out, dev, corpus, metric: str, args) -> None:
    """The trained ranker (its best epoch, which is what --out holds) against the first stage on the dev
    lists, by the one significance rule; a significantly worse ranker gets a warning."""
    from intdistill.models import Ranker
    from intdistill.train.ranker import score_lists

    ranker = Ranker.load(out, device=None if args.device == "auto" else args.device)
    if args.cache_dir:
        ranker.prime_corpus(corpus, (d for _, c in dev.lists.values() for d in c), cache_dir=args.cache_dir)
    test = dev.judge(score_lists(ranker, dev.lists, corpus), corpus)
    verdict = test.verdict()
    print(f"dev: the ranker vs the first stage on {test.n} lists: {metric} {test.mean_a:.4f} -> {test.mean_b:.4f} "
          f"({test.delta:+.4f}, p={test.p_value:.3g}): {verdict}", file=sys.stderr)
    if verdict == "worse":
        print("!" * 78 + f"\nWARNING: the ranker re-ranks the dev lists WORSE than their first-stage order "
              f"({metric} {test.mean_b:.4f} vs {test.mean_a:.4f}, p={test.p_value:.3g}). As the teacher of "
              "train-retriever it is likely to make the retriever worse: train it longer or on more queries, "
              "or start from a stronger --model.\n" + "!" * 78, file=sys.stderr)
