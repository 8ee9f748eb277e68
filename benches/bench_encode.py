"""Corpus encoding throughput: intdistill ``Retriever.encode_passages`` vs ``SentenceTransformer.encode``.

Same model (the bundled all-MiniLM-L6-v2), same SciFact passages (title + " " + text), same batch size, same
device and torch thread count. Each side runs ``--repeats`` times, alternating, after a warm-up; the best
wall time of each is reported as passages/s, with the ratio ours / sentence-transformers (goal >= 1.0), and the
best process CPU time too (steadier than wall time on a shared machine; with ``--threads 1`` it is the compute
itself). Also checks that both give the same embeddings (minimum cosine).

    PYTHONPATH=python python benches/bench_encode.py --n 2000 --batch-size 64 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact" / "corpus.jsonl"


def load_passages(path: Path, n: int) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            texts.append(f"{rec['title']} {rec['text']}" if rec.get("title") else rec["text"])
            if len(texts) == n:
                break
    return texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="passages (default 2000)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--data", type=Path, default=DATA, help="BEIR corpus.jsonl")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from sentence_transformers import SentenceTransformer

    from intdistill.models import Retriever
    from intdistill.models.common import default_model_path

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = load_passages(args.data, args.n)
    ours = Retriever.load(device=args.device)
    st = SentenceTransformer(str(default_model_path()), device=args.device)
    ours.encode_passages(texts[:64], batch_size=args.batch_size)  # warm-up
    st.encode(texts[:64], batch_size=args.batch_size)

    runs = {
        "intdistill": lambda: ours.encode_passages(texts, batch_size=args.batch_size),
        "sentence-transformers": lambda: st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True),
    }
    wall = {name: float("inf") for name in runs}
    cpu = {name: float("inf") for name in runs}
    emb = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            t, c = time.perf_counter(), time.process_time()
            emb[name] = fn()
            wall[name] = min(wall[name], time.perf_counter() - t)
            cpu[name] = min(cpu[name], time.process_time() - c)

    a, b = emb["intdistill"], emb["sentence-transformers"]
    min_cos = float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())
    print(f"{len(texts)} SciFact passages, all-MiniLM-L6-v2, batch {args.batch_size}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, best of {args.repeats}")
    for name in runs:
        print(f"  {name:22s} wall {wall[name]:8.2f} s  {len(texts) / wall[name]:8.1f} passages/s   "
              f"cpu {cpu[name]:8.2f} s  {len(texts) / cpu[name]:8.1f} passages/cpu-s")
    print(f"  ratio intdistill / sentence-transformers (throughput): wall "
          f"{wall['sentence-transformers'] / wall['intdistill']:.3f}, cpu {cpu['sentence-transformers'] / cpu['intdistill']:.3f}")
    print(f"  min cosine between the two embeddings: {min_cos:.6f}")


if __name__ == "__main__":
    main()
