"""One training step's throughput, per stage: intdistill's loop step vs sentence-transformers' trainer.

- Stage 1: intdistill ``RankerStage`` + ``loop.train_step`` (ListMLE on the LLM's permutation) vs
  ``CrossEncoder`` + ``CrossEncoderTrainer`` + ``ListMLELoss`` (docs given in the teacher's order,
  ``respect_input_order=True``, its default ``mini_batch_size``).
- Stage 2: intdistill ``RetrieverStage`` + ``loop.train_step`` (KL of the student's dot products against
  precomputed teacher scores) vs ``SentenceTransformer`` + ``SentenceTransformerTrainer`` +
  ``DistillKLDivLoss`` (dot product, the same student and teacher temperatures, teacher scores as labels).

Same model (the bundled all-MiniLM-L6-v2; the cross-encoder's new head is the same tensor on both sides),
same SciFact batch (``--queries`` queries x ``--cands`` candidates from the shared LLM label file, title + " "
+ text, 256 tokens), same device and torch threads, same optimizer (AdamW, lr 2e-5, no warmup, weight decay
0.01, grad-norm clip 1.0), fp32. A step's time is measured from the end of one optimizer step to the end of
the next (so it includes fetching and tokenising the batch on both sides); the first step is a warm-up and
not counted. The two sides alternate ``--repeats`` times; the best mean step time of each is reported, as
wall and process CPU time, with the ratio ours / sentence-transformers in throughput (goal >= 1.0).

Needs the sentence-transformers training extras (``datasets``, ``accelerate``).

    PYTHONPATH=python python benches/bench_train.py --queries 8 --cands 10 --steps 3 --repeats 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LABELS = DATA / "scifact-llm-labels" / "labels.qwen2.5-coder-1.5b.n10.jsonl"


def _timed_steps(run_step, n_steps: int) -> tuple[float, float]:
    """Mean (wall, cpu) seconds per step over ``n_steps`` steps after one warm-up step."""
    run_step(0)
    t, c = time.perf_counter(), time.process_time()
    for i in range(1, n_steps + 1):
        run_step(i)
    return (time.perf_counter() - t) / n_steps, (time.process_time() - c) / n_steps


def _our_optimizer(model):
    import torch
    from transformers import get_linear_schedule_with_warmup

    from intdistill.train.loop import param_groups

    opt = torch.optim.AdamW(param_groups(model, 0.01), lr=2e-5)
    sched = get_linear_schedule_with_warmup(opt, 0, 10**6)
    return opt, sched, torch.amp.GradScaler("cpu", enabled=False)


def _ours(stage, batches, device):
    import torch

    from intdistill.train.loop import train_step

    opt, sched, scaler = _our_optimizer(stage.model)
    stage.model.train()

    def step(i):
        train_step(stage, batches[i % len(batches)], opt, sched, scaler, batch_size=len(batches[0]),
                   max_grad_norm=1.0, device=torch.device(device), amp_dtype=None)

    return step


class _StepTimer:
    """A TrainerCallback recording the wall and CPU time at the end of each optimizer step."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class CB(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                timer.marks.append((time.perf_counter(), time.process_time()))

        self.callback = CB()
        self.marks: list[tuple[float, float]] = []

    def per_step(self) -> tuple[float, float]:
        (w0, c0), (w1, c1) = self.marks[0], self.marks[-1]  # from the end of the warm-up step
        n = len(self.marks) - 1
        return (w1 - w0) / n, (c1 - c0) / n


def _st_args(cls, out_dir, batch, steps, device):
    return cls(
        output_dir=out_dir, per_device_train_batch_size=batch, max_steps=steps + 1, learning_rate=2e-5,
        warmup_ratio=0.0, weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear", logging_steps=10**6,
        save_strategy="no", report_to="none", disable_tqdm=True, use_cpu=device == "cpu", seed=0,
        dataloader_drop_last=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queries", type=int, default=8, help="queries per step (default 8)")
    ap.add_argument("--cands", type=int, default=10, help="candidates per query, at most 10 (default 10)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per run, after one warm-up (default 3)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs per side (default 2)")
    ap.add_argument("--stage", choices=("1", "2", "both"), default="both")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--ours-only", action="store_true", help="time intdistill's step only (no peer, no ratio)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import ListMLELoss
    from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments
    from sentence_transformers.util import pairwise_dot_score

    from intdistill.data import load_corpus, load_queries
    from intdistill.labels import load_labels
    from intdistill.models import Ranker, Retriever
    from intdistill.models.common import default_model_path
    from intdistill.train.ranker import RankerStage
    from intdistill.train.retriever import RetrieverStage, TeacherCache
    from intdistill.train.sources import RankedList

    if args.threads:
        torch.set_num_threads(args.threads)
    B, n, steps = args.queries, args.cands, args.steps
    corpus = load_corpus(DATA / "scifact" / "corpus.jsonl")
    queries = load_queries(DATA / "scifact" / "queries.jsonl")
    labels = list(load_labels(LABELS).values())[: B * (steps + 1)]
    if len(labels) < B * (steps + 1):
        raise SystemExit(f"need {B * (steps + 1)} labelled queries, the label file has {len(labels)}")
    lists = [RankedList(l.qid, queries[l.qid].text, l.cands[:n],
                        tuple(i for i in l.permutation if i < n)) for l in labels]
    batches = [[r.qid for r in lists[i : i + B]] for i in range(0, len(lists), B)]
    text = {d: corpus[d].full_text() for r in lists for d in r.cands}
    tmp = tempfile.mkdtemp(prefix="bench-train-")
    print(f"SciFact, all-MiniLM-L6-v2, {B} queries x {n} candidates per step, 256 tokens, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, {steps} timed steps after 1 warm-up, best of {args.repeats}")

    results = {}
    if args.stage in ("1", "both"):
        torch.manual_seed(0)
        ranker_dir = Path(tmp) / "ranker"
        Ranker.load(None, device="cpu").save(ranker_dir)  # one new head, shared by both sides
        ours = RankerStage(Ranker.load(ranker_dir, device=args.device), lists, corpus, progress=False)
        ce = CrossEncoder(str(ranker_dir), num_labels=1, max_length=256, device=args.device)
        ds = Dataset.from_dict({
            "query": [r.query for r in lists],
            "docs": [[text[r.cands[i]] for i in r.permutation] for r in lists],  # teacher order, best first
            "labels": [[float(n - k) for k in range(len(r.cands))] for r in lists],
        })

        def st_stage1():
            timer = _StepTimer()
            trainer = CrossEncoderTrainer(model=ce, args=_st_args(CrossEncoderTrainingArguments, tmp, B, steps, args.device),
                                          train_dataset=ds, loss=ListMLELoss(ce), callbacks=[timer.callback])
            trainer.train()
            return timer.per_step()

        results["stage 1 (cross-encoder, ListMLE)"] = _compare(
            lambda: _timed_steps(_ours(ours, batches, args.device), steps), None if args.ours_only else st_stage1,
            args.repeats)

    if args.stage in ("2", "both"):
        student = Retriever.load(None, device=args.device)
        teacher = Ranker.load(ranker_dir if args.stage == "both" else None, device="cpu")
        cache = TeacherCache(teacher_key="bench")
        rng = np.random.default_rng(0)
        teacher_scores = {r.qid: rng.normal(0.0, 3.0, len(r.cands)).tolist() for r in lists}
        cache.put((r.qid, d, s) for r in lists for d, s in zip(r.cands, teacher_scores[r.qid]))
        qs = {r.qid: queries[r.qid] for r in lists}
        ours2 = RetrieverStage(student, teacher, qs, corpus, n_candidates=n, tau_student=0.05, tau_teacher=1.0,
                               cache=cache, progress=False)
        ours2.cands = {r.qid: r.cands for r in lists}  # as mined; mining is not part of a step
        st_model = SentenceTransformer(str(default_model_path()), device=args.device)
        cols = {"query": [r.query for r in lists]}
        for k in range(n):
            cols[f"cand_{k}"] = [text[r.cands[k]] for r in lists]
        cols["label"] = [teacher_scores[r.qid] for r in lists]
        ds2 = Dataset.from_dict(cols)

        def st_stage2():
            timer = _StepTimer()
            loss = DistillKLDivLoss(st_model, similarity_fct=pairwise_dot_score, student_temperature=0.05,
                                    teacher_temperature=1.0)
            trainer = SentenceTransformerTrainer(model=st_model, args=_st_args(SentenceTransformerTrainingArguments, tmp, B, steps, args.device),
                                                 train_dataset=ds2, loss=loss, callbacks=[timer.callback])
            trainer.train()
            return timer.per_step()

        results["stage 2 (bi-encoder, KL)"] = _compare(
            lambda: _timed_steps(_ours(ours2, batches, args.device), steps), None if args.ours_only else st_stage2,
            args.repeats)

    for name, (ours_t, st_t) in results.items():
        print(name)
        for who, t in (("intdistill", ours_t), ("sentence-transformers", st_t)):
            if t is not None:
                print(f"  {who:22s} wall {t[0]:7.2f} s/step  {B / t[0]:6.2f} queries/s   cpu {t[1]:7.2f} s/step")
        if st_t is not None:
            print(f"  ratio intdistill / sentence-transformers (throughput): wall {st_t[0] / ours_t[0]:.3f}, "
                  f"cpu {st_t[1] / ours_t[1]:.3f}")


def _compare(ours, peer, repeats):
    """Alternate the two sides ``repeats`` times; the best (wall, cpu) of each (None for no peer)."""
    best_o, best_p = (float("inf"),) * 2, (float("inf"),) * 2
    for _ in range(repeats):
        best_o = min(best_o, ours())
        if peer is not None:
            best_p = min(best_p, peer())
    return best_o, (best_p if peer is not None else None)


if __name__ == "__main__":
    main()
