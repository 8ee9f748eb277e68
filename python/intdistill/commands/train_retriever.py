"""Stage 2: distil the trained ranker into the bi-encoder retriever (KL over mined candidates).

Needs no labels: every query in --queries (and --extra-queries) is a training query. Each query's top
--n-candidates passages are mined by the current retriever (exact search over the whole corpus), re-mined
every --refresh epochs, and scored once by the frozen ranker (cached in --teacher-cache). The trained
retriever is written to --out (it loads with sentence_transformers.SentenceTransformer), with
checkpoints/ (a rerun resumes), best/ and metrics.jsonl.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from intdistill.stages.training import TrainRetrieverConfig

    TrainRetrieverConfig.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from intdistill.stages.training import TrainRetrieverConfig, train_retriever

    train_retriever(TrainRetrieverConfig.from_args(args))
    return 0
