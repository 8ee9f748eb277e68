"""Pure-Python references for ``rust/src/answers.rs``.

* SQuAD v1.1: the logic of the official ``evaluate-v1.1.py`` (Rajpurkar et al., 2016), re-written
  here function for function: ``normalize_answer``, ``f1_score``, ``exact_match_score``,
  ``metric_max_over_ground_truths`` and the ``evaluate`` loop over the official JSON.
* DPR has-answer: the logic of ``dpr/data/qa_validation.py`` (``has_answer`` with
  ``match_type="string"``) and ``dpr/utils/tokenizers.py`` (``SimpleTokenizer``), on the
  third-party ``regex`` module exactly as DPR uses it. One deviation, shared with the Rust: an
  answer with no tokens raises instead of matching every passage.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

import regex

# --- SQuAD v1.1 -------------------------------------------------------------------------------


def normalize_answer(s: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction: str, ground_truth: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)


def squad_em_f1(preds: list[str], golds: list[list[str]]) -> tuple[list[float], list[float]]:
    """Per-item EM and F1 in [0, 1] (the official per-question values before the ×100 mean)."""
    if len(preds) != len(golds):
        raise ValueError(f"expected len(golds) == len(preds) == {len(preds)}, got {len(golds)}")
    pairs = list(zip(preds, golds))
    em = [float(metric_max_over_ground_truths(exact_match_score, p, g)) for p, g in pairs]
    f1 = [float(metric_max_over_ground_truths(f1_score, p, g)) for p, g in pairs]
    return em, f1


def evaluate(dataset: list, predictions: dict[str, str]) -> dict[str, float]:
    """The official ``evaluate``: ``dataset`` is the JSON's ``data``; means in percent."""
    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue  # the official script prints a message and scores 0
                ground_truths = list(map(lambda x: x["text"], qa["answers"]))
                prediction = predictions[qa["id"]]
                exact_match += metric_max_over_ground_truths(
                    exact_match_score, prediction, ground_truths
                )
                f1 += metric_max_over_ground_truths(f1_score, prediction, ground_truths)
    exact_match = 100.0 * exact_match / total
    f1 = 100.0 * f1 / total
    return {"exact_match": exact_match, "f1": f1}


# --- DPR has-answer ---------------------------------------------------------------------------

_ALPHA_NUM = r"[\p{L}\p{N}\p{M}]+"
_NON_WS = r"[^\p{Z}\p{C}]"
_SIMPLE_TOKENIZER = regex.compile(
    "(%s)|(%s)" % (_ALPHA_NUM, _NON_WS),
    flags=regex.IGNORECASE + regex.UNICODE + regex.MULTILINE,
)


def _normalize(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def simple_tokenize(text: str) -> list[str]:
    """``SimpleTokenizer().tokenize(text).words(uncased=True)`` (no NFD here)."""
    return [m.group().lower() for m in _SIMPLE_TOKENIZER.finditer(text)]


def dpr_tokenize(text: str) -> list[str]:
    return simple_tokenize(_normalize(text))


def has_answer(answers: list[str], text: str) -> bool:
    """DPR ``has_answer(answers, text, tokenizer, match_type="string")``."""
    text = simple_tokenize(_normalize(text))
    for single_answer in answers:
        single_answer = simple_tokenize(_normalize(single_answer))
        if not single_answer:
            raise ValueError(f"answer {single_answer!r} has no tokens")
        for i in range(0, len(text) - len(single_answer) + 1):
            if single_answer == text[i : i + len(single_answer)]:
                return True
    return False


def has_answer_batch(passages: list[list[str]], answers: list[list[str]]) -> list[list[bool]]:
    if len(passages) != len(answers):
        raise ValueError(
            f"expected len(answers) == len(passages) == {len(passages)}, got {len(answers)}"
        )
    for i, ans in enumerate(answers):
        for j, a in enumerate(ans):
            if not dpr_tokenize(a):
                raise ValueError(f"answers[{i}][{j}] = {a!r} has no tokens")
    return [[has_answer(ans, p) for p in ps] for ps, ans in zip(passages, answers)]
