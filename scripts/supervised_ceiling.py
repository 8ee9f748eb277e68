"""The supervised ceiling: how far does a plain contrastive fine-tune of the base retriever on the training
queries' gold passages go? (sentence-transformers' MultipleNegativesRankingLoss, in-batch negatives; the
peer every distillation result should be read against.) Not the method: it needs labelled training queries.

    python scripts/supervised_ceiling.py --corpus C --train-queries Q --train-qrels QRELS \
        --test-queries TQ [--test-qrels TQRELS] --out DIR [--epochs 1 --batch-size 32 --max-length 128]

Trains on --max-length-token passes and saves DIR/model (a sentence-transformers directory) at the base's own
length, as stage 2 does, so both are judged reading the same tokens; prints base vs fine-tuned on the test queries with
`intdistill evaluate`'s paired test: by qrels (nDCG@10, R@100, RR@10) or, for SQuAD-style queries with
answers and no test qrels, by answer strings (Acc@1/5/20).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--train-queries", required=True)
    ap.add_argument("--train-qrels", required=True)
    ap.add_argument("--test-queries", required=True)
    ap.add_argument("--test-qrels")
    ap.add_argument("--out", required=True)
    ap.add_argument("--base", default=None, help="base retriever (default: the bundled all-MiniLM-L6-v2)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from tqdm import tqdm

    from intdistill import data
    from intdistill.models.common import resolve_model

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    corpus = data.load_corpus(args.corpus)
    queries = data.load_queries(args.train_queries)
    qrels = data.load_qrels(args.train_qrels)
    pairs = [(queries[q].text, corpus[d].full_text()) for q in queries if q in qrels
             for d, rel in qrels[q].items() if rel > 0 and d in corpus]
    if not pairs:
        raise SystemExit(f"{args.train_qrels}: no (query, relevant passage) pair found in {args.train_queries} / {args.corpus}")
    print(f"{len(pairs)} (query, gold passage) pairs from {sum(q in qrels for q in queries)} training queries",
          file=sys.stderr)

    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    src, _ = resolve_model(args.base)
    model = SentenceTransformer(str(src), device="cpu")
    eval_length = model.max_seq_length  # trained on --max-length tokens, saved (and judged) at the base's own
    model.max_seq_length = args.max_length
    loss_fn = MultipleNegativesRankingLoss(model)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    steps = args.epochs * ((len(pairs) + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10))
                                             * max(0.0, (steps - s) / steps))
    t0 = time.perf_counter()
    model.train()
    with tqdm(total=steps, desc="fine-tune", file=sys.stderr) as bar:
        for _ in range(args.epochs):
            rng.shuffle(pairs)
            for i in range(0, len(pairs), args.batch_size):
                batch = pairs[i: i + args.batch_size]
                feats = [model.tokenize([q for q, _ in batch]), model.tokenize([p for _, p in batch])]
                loss = loss_fn(feats, torch.empty(0))
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    model.max_seq_length = eval_length
    model.save(str(out / "model"))
    print(f"fine-tuned in {time.perf_counter() - t0:.0f} s ({steps} steps)", file=sys.stderr)

    def cands(tag: str, retriever: list[str]) -> Path:
        path = out / f"{tag}.trec"
        if not path.exists():
            judge = ["--qrels", args.test_qrels] if args.test_qrels else []
            subprocess.run(["intdistill", "candidates", "--corpus", args.corpus, "--queries", args.test_queries,
                            *judge, "-n", "100", "--out", str(path), *retriever], check=True)
        return path

    base, tuned = cands("base", []), cands("supervised", ["--retriever", str(out / "model")])
    judge = (["--qrels", args.test_qrels, "-m", "nDCG@10", "R@100", "RR@10"] if args.test_qrels else
             ["--queries", args.test_queries, "--corpus", args.corpus, "-m", "Acc@1", "Acc@5", "Acc@20"])
    return subprocess.run(["intdistill", "evaluate", *judge, "--run", f"base={base}", "--run", f"supervised={tuned}",
                           "--format", "markdown"]).returncode


if __name__ == "__main__":
    sys.exit(main())
