"""Label candidate lists with a black-box LLM (listwise re-ranking); resumable, every answer cached.

Reads the candidates JSONL of `intdistill candidates` and writes one label line per query to --out as soon
as it is finished. Rerunning the same command resumes; anything already answered comes from --cache for free.
A query whose calls still fail after every retry is listed in <out>.failed.jsonl and the others go on; the
command then exits 4, and a rerun retries only the failed ones.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from intdistill.stages.llm_steps import LabelConfig

    LabelConfig.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from intdistill.cli import EXIT_ITEMS_FAILED
    from intdistill.stages.llm_steps import LabelConfig, label

    summary = label(LabelConfig.from_args(args))
    return EXIT_ITEMS_FAILED if summary.failed else 0
