"""First-stage retrieval: the top-n candidate passages of each query by exact dense search.

Writes JSONL (one line per query: qid, cands, scores, retriever), or a TREC run when --out ends with
.trec or .run. With --qrels, only queries judged there are used, and the share of their relevant
documents found among the candidates is reported on stderr.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from intdistill.stages.first_stage import CandidatesConfig

    CandidatesConfig.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from intdistill.stages.first_stage import CandidatesConfig, candidates

    candidates(CandidatesConfig.from_args(args))
    return 0
