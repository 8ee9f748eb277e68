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


def configure(parser: argparse.ArgumentParser) -> None:
    from intdistill.stages.training import TrainRankerConfig

    TrainRankerConfig.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from intdistill.stages.training import TrainRankerConfig, train_ranker

    train_ranker(TrainRankerConfig.from_args(args))
    return 0
