"""intdistill: turn a black-box LLM into a better small retriever (Intermediate Distillation).

LLM listwise rankings -> cross-encoder ranker (ListMLE) -> bi-encoder retriever (KL distillation).
"""

from intdistill.data import DataError, Passage, Qrels, Query, Run
from intdistill.metrics import Evaluation, evaluate  # numpy only; the Rust core loads on first call

__version__ = "0.1.0"

__all__ = ["DataError", "Evaluation", "Passage", "Qrels", "Query", "Run", "__version__", "evaluate"]
