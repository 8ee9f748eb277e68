"""Answer metrics, Rust vs the pure-Python originals, on the shared SQuAD v1.1 dev part.

- has-answer: 7,672 questions x 20 passages (its own paragraph at a random rank in 80% of the
  lists, the rest random paragraphs): ``_core.has_answer`` vs DPR's ``has_answer`` logic
  (``tests/reference_answers.py``, on the ``regex`` module as DPR uses it).
- SQuAD EM / F1: 7,672 predictions (random context spans) vs the official evaluate-v1.1 logic.

Run: ``PYTHONPATH=python .venv/bin/python benches/bench_answers.py``. Prints wall seconds (Rust:
best of several calls, rayon over all cores; Python: one call) and ratios; checks that both sides
agree on every value.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import reference_answers as ref  # noqa: E402

from intdistill import _core  # noqa: E402

SQUAD = ROOT.parent / "shared" / "data" / "squad-dev" / "dev-v1.1.part.json"


def timed(fn, *args, repeat: int = 1):
    """(result, best wall seconds over ``repeat`` calls)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return out, best


def main() -> int:
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    contexts, rows = [], []
    for art in data:
        for par in art["paragraphs"]:
            contexts.append(par["context"])
            for qa in par["qas"]:
                rows.append((len(contexts) - 1, [a["text"] for a in qa["answers"]]))
    rng = random.Random(0)
    passages, answers = [], []
    for own, golds in rows:
        docs = [c for c in rng.sample(range(len(contexts)), 21) if c != own][:20]
        if rng.random() < 0.8:
            docs[rng.randrange(20)] = own
        passages.append([contexts[d] for d in docs])
        answers.append(golds)
    n_pass = sum(map(len, passages))
    print(f"has_answer: {len(rows)} questions x 20 passages = {n_pass} pairs", file=sys.stderr)

    rust, t_rust = timed(_core.has_answer, passages, answers, repeat=3)
    python, t_py = timed(ref.has_answer_batch, passages, answers)
    assert rust == python, "Rust and the DPR reference disagree"
    hits = sum(map(sum, rust))
    print(f"has_answer  rust {t_rust:7.3f} s   python(DPR logic) {t_py:7.3f} s   "
          f"ratio {t_py / t_rust:6.1f}x   ({hits} of {n_pass} passages have an answer)")

    preds = []
    for own, _ in rows:
        words = contexts[own].split()
        start = rng.randrange(len(words))
        preds.append(" ".join(words[start : start + rng.randint(1, 8)]))
    golds = [g for _, g in rows]
    (em, f1), t_rust = timed(_core.squad_em_f1, preds, golds, repeat=5)
    (em_ref, f1_ref), t_py = timed(ref.squad_em_f1, preds, golds)
    assert em.tolist() == em_ref and f1.tolist() == f1_ref, "Rust and the official logic disagree"
    print(f"squad_em_f1 rust {t_rust:7.3f} s   python(official)  {t_py:7.3f} s   "
          f"ratio {t_py / t_rust:6.1f}x   (EM {100 * em.mean():.2f}, F1 {100 * f1.mean():.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
