"""Build a dense index: encode the corpus with the retriever and index it with usearch (HNSW).

Writes the index directory (index.usearch, docids.json, meta.json) and reports on stderr the build time,
the index size and the recall@10 of the HNSW search against exact search on a sample of queries: the
queries of --queries when given, else passages of the corpus.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    from intdistill.stages.first_stage import IndexConfig

    IndexConfig.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from intdistill.stages.first_stage import IndexConfig, build_index

    build_index(IndexConfig.from_args(args))
    return 0
