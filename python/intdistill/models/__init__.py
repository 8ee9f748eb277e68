"""Models: :class:`Retriever` (bi-encoder) and :class:`Ranker` (cross-encoder).

HF checkpoints in (the bundled all-MiniLM-L6-v2 by default, any local path or hub name); HF /
sentence-transformers directories out. Importing this package is cheap; torch loads on first use of a class.
"""

from __future__ import annotations

__all__ = ["Ranker", "Retriever", "RetrieverConfig"]


def __getattr__(name: str):
    if name in ("Retriever", "RetrieverConfig"):
        from intdistill.models import retriever

        return getattr(retriever, name)
    if name == "Ranker":
        from intdistill.models.ranker import Ranker

        return Ranker
    raise AttributeError(f"module 'intdistill.models' has no attribute {name!r}")
