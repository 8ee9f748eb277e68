"""The stages layer: one library function per step of the method, with a typed configuration.

``intdistill COMMAND`` builds a stage's configuration from its flags and ``intdistill run`` from a TOML table;
both then call the same function here, with objects in and objects out (no command line, no stdout in
between). Within one ``intdistill run``, files are parsed once (:mod:`intdistill.loaded`).

- :mod:`~intdistill.stages.config`: :class:`StageConfig`, the base of every stage's configuration (argparse
  flags, TOML keys and the equivalent command line, all built from the dataclass fields).
- :mod:`~intdistill.stages.first_stage`: candidate lists (``candidates``) and a retriever's index (``index``).
- :mod:`~intdistill.stages.llm_steps`: the LLM writes queries (``generate-queries``), labels lists (``label``)
  and answers from a retriever's passages (``rag``).
- :mod:`~intdistill.stages.training`: stage 1 (``train-ranker``) and stage 2 (``train-retriever``).
- :mod:`~intdistill.stages.judge`: open and search an index, compare runs, check a ranker.
"""

from intdistill.stages.first_stage import CandidatesConfig, IndexConfig, build_index, candidates
from intdistill.stages.training import (TrainRankerConfig, TrainRetrieverConfig, train_ranker,
                                        train_retriever)
from intdistill.stages.llm_steps import GenerateConfig, LabelConfig, RagConfig, generate, label, rag
from intdistill.stages.judge import (OpenIndex, RankerCheck, check_against_anchor, check_ranker,
                                     check_ranker_and_anchor, compare_runs, lexical_anchor, load_ranker, open_index,
                                     ranker_order, search, select_queries)

#: command -> its stage configuration (the commands already in the stages layer)
CONFIGS = {c.command: c for c in (GenerateConfig, CandidatesConfig, LabelConfig, TrainRankerConfig,
                                  TrainRetrieverConfig, IndexConfig, RagConfig)}

__all__ = ["CONFIGS", "CandidatesConfig", "IndexConfig", "OpenIndex", "RankerCheck", "build_index", "candidates",
           "check_ranker", "check_ranker_and_anchor", "check_against_anchor", "lexical_anchor", "load_ranker",
           "compare_runs", "open_index", "ranker_order", "search", "select_queries",
           "TrainRankerConfig", "TrainRetrieverConfig", "train_ranker", "train_retriever", "GenerateConfig",
           "LabelConfig", "RagConfig", "generate", "label", "rag"]
