"""Training: stage 1 (cross-encoder ranker, ListMLE on ranked lists) and stage 2 (bi-encoder retriever,
KL distillation from the frozen ranker), on one shared loop with checkpoints and resume.

- :mod:`intdistill.train.loop`: :class:`TrainConfig`, :class:`Stage`, :func:`train`, :class:`TrainResult`.
- :mod:`intdistill.train.sources`: label sources (``llm``, ``gold-first``, ``first-stage``, ``random``).
- :mod:`intdistill.train.ranker`: :class:`RankerStage`, :func:`train_ranker`, dev re-ranking.
- :mod:`intdistill.train.retriever`: :class:`RetrieverStage`, :func:`train_retriever`, teacher score cache.

Importing this package is cheap; torch loads on first use of a name.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "TrainConfig": "loop", "TrainResult": "loop", "Stage": "loop", "train": "loop",
    "LABEL_SOURCES": "sources", "RankedList": "sources", "build_lists": "sources",
    "RankerStage": "ranker", "RerankDev": "ranker", "rerank_dev": "ranker", "train_ranker": "ranker",
    "RetrieverStage": "retriever", "RetrievalDev": "retriever", "retrieval_dev": "retriever",
    "TeacherCache": "retriever", "train_retriever": "retriever",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'intdistill.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"intdistill.train.{module}"), name)
