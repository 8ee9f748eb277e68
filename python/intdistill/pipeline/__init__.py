"""The whole method as one resumable command: ``intdistill run CONFIG.toml``.

Stages, in order (:data:`SPECS`). Each calls the library (:mod:`intdistill.stages`) with a typed configuration
built from its TOML table, and the manifest records the equivalent command line, so every step can be rerun
by hand (training on ``[train] nproc`` processes runs that command line under ``torchrun``):

==================  ===========================================================================================
``generate``        corpus only (no ``[data] train_queries``): the LLM writes the training queries
``candidates``      first stage: top-n passages of every training query (base retriever, exact search)
``label``           the LLM ranks the candidate lists of the first ``label.max_queries`` queries
``gate``            the teacher's order vs the first stage's inside the labelled lists, judged by qrels or
                    answers; a teacher significantly *worse* stops the run here unless ``--allow-weak-teacher``
``train-ranker``    stage 1 on the LLM's labels (and, with ``[reference]``, on gold-first orders)
``ranker-check``    each ranker's order vs the first stage's on ``[ranker_check] held_out`` training lists no
                    ranker trained on (default 100); an LLM ranker significantly *worse* stops the run here
                    unless ``--allow-weak-teacher``: it would teach the retriever to rank worse
``train-retriever`` stage 2 from each ranker over all training queries (labels are not needed here)
``index``           a usearch index per retriever (base, llm, gold-first)
``evaluate``        test-query runs from each index; metrics with paired tests against the base
``rag``             retrieve k passages, the LLM reader answers, EM/F1 (base and distilled)
``curve``           optional (``[curve] sizes``): gold-first training-set-size curve
``report``          ``report.md`` with PNG plots in the work directory
==================  ===========================================================================================

The work directory holds every output and ``manifest.json``: input file hashes, the configuration, package
versions, per-stage command lines, timings and a key. A stage whose key (its configuration, its inputs' hashes
and the keys of the stages before it) is unchanged and whose outputs exist is skipped on a rerun; ``--from``
reruns from a stage on, ``--until`` stops after one. Secrets never enter the manifest: only the *name* of the
environment variable holding an API key is passed on.

The configuration (TOML; paths relative to the file) names the data and, per stage, any option of the matching
command (``max_length = 128`` under ``[ranker]`` becomes ``--max-length 128`` of ``train-ranker``)::

    [data]
    corpus = "squad-mini/corpus.jsonl"
    train_queries = "squad-mini/train-queries.jsonl"
    test_queries = "squad-mini/test-queries.jsonl"
    # train_qrels / test_qrels: judge by qrels (BEIR data); without them, by the queries' answers

    [llm]                    # teacher and reader (any OpenAI-compatible endpoint, or local:NAME)
    llm = "local:qwen2.5-coder-1.5b"

    [candidates]  n = 10
    [label]       max_queries = 12
    [ranker]      epochs = 3
    [retriever]   epochs = 1
    [reference]   gold_first = true
    [evaluate]    depth = 20
    [rag]         k = 3    max_queries = 20
"""

from intdistill.pipeline.config import (DATA_KEYS, DEFAULT_HELD_OUT, MANIFEST, MIN_HELD_OUT, RETRIEVER_DIRS,
                                        SECTIONS, BudgetStopped, Config, GateStopped, PipelineError, RunStopped,
                                        StageFailed, _check_keys, _command_keys, _toml, data_lines, file_sha256,  # noqa: F401
                                        load_config, options, versions)
from intdistill.pipeline.core import SPEC, SPECS, STAGES, Pipeline, StageResult, StageSpec

__all__ = ["DATA_KEYS", "DEFAULT_HELD_OUT", "MANIFEST", "MIN_HELD_OUT", "RETRIEVER_DIRS", "SECTIONS", "SPEC", "SPECS",
           "STAGES", "BudgetStopped", "Config", "GateStopped", "Pipeline", "PipelineError", "RunStopped",
           "StageFailed", "StageResult", "StageSpec", "data_lines", "file_sha256", "load_config", "options",
           "versions"]
