"""Write training queries from the corpus with the LLM (InPars / Promptagator style): for a corpus without queries.

Samples -n passages (seeded; round-robin over documents where titles group passages), asks the LLM for one
question about each (few-shot: --examples, a queries file of your own, else a built-in set), keeps each raw
answer in <out stem>.journal.jsonl (a rerun makes no call for what is there), drops empty, overlong, copied
and duplicate queries (counted), and with --filter-top K keeps only queries whose source passage the first
stage ranks in its top K (the round-trip filter). Writes the kept queries to --out (a queries JSONL whose
lines also name their "source" passage) and <out stem>.qrels.tsv (the source as the relevant passage): train
with `train-ranker --label-source source-first --queries OUT`, or judge with the qrels.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from intdistill.stages.llm_steps import GenerateConfig

    GenerateConfig.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from intdistill.cli import EXIT_ITEMS_FAILED
    from intdistill.stages.llm_steps import GenerateConfig, generate

    summary = generate(GenerateConfig.from_args(args))
    return EXIT_ITEMS_FAILED if summary.failed else 0
