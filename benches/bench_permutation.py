"""Parse 1,000,000 LLM-like ranking outputs: Rust batch vs the pure-Python reference vs a
rank_llm-style digit parser.

    PYTHONPATH=python python benches/bench_permutation.py [--count 1000000] [--sample 100000] [--seed 0]

The outputs are generated with a fixed seed: n = 10..20 candidates; mostly clean ``[a] > [b] > ...``,
plus chatter before/after, ``<think>`` blocks, duplicates / missing / invented ids, bare integers,
numbered lines and ``Passage k`` mentions (mix printed below). The Python parsers are timed on the
first ``--sample`` outputs and extrapolated linearly to ``--count`` (said so in the output).

The rank_llm-style peer is written here from rank_llm's documented behaviour (``receive_permutation``:
keep digits, split, 1-based -> 0-based, dedupe keeping first occurrences, drop out-of-range ids, append
the missing in first-stage order); it keeps no repair counts, and its dedupe uses a set (faster than a
list scan), which favours it. Agreement with our parse is printed per kind of output.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import reference_permutation as ref  # noqa: E402

from intdistill import _core  # noqa: E402

LABELS = ROOT.parent / "shared" / "data" / "scifact-llm-labels" / "labels.qwen2.5-coder-1.5b.n10.jsonl"

KINDS = [  # (kind, weight)
    ("clean", 0.70),
    ("repaired", 0.10),  # clean format, with duplicates / missing / invented ids
    ("chatter", 0.07),
    ("think", 0.04),
    ("bare", 0.04),
    ("numbered", 0.03),
    ("mention", 0.02),
]
BEFORE = ["Here is the ranking:\n", "Sure! Here are the 20 passages ranked by relevance:\n\n", "Ranking: ",
          "Based on the query, the order is:\n"]
AFTER = ["\nI hope this helps!", "\n\nLet me know if you need anything else.", " (most to least relevant)",
         "\nNote: passages 2 and 5 were close."]


def generate(count: int, seed: int) -> tuple[list[str], list[int], list[str]]:
    rng = random.Random(seed)
    kinds, weights = zip(*KINDS)
    texts, ns, labels = [], [], []
    for kind in rng.choices(kinds, weights, k=count):
        n = rng.randint(10, 20)
        ids = list(range(1, n + 1))
        rng.shuffle(ids)
        if kind == "repaired":
            if rng.random() < 0.5:
                del ids[rng.randint(n // 2, n - 1):]
            for _ in range(rng.randint(0, 2)):
                ids.insert(rng.randint(0, len(ids)), rng.choice(ids))
            if rng.random() < 0.3:
                ids.insert(rng.randint(0, len(ids)), rng.choice([0, n + 1, n + 5]))
        if kind == "bare":
            body = rng.choice([" > ", ", ", " "]).join(map(str, ids))
        elif kind == "numbered":
            body = "\n".join(f"{r + 1}. [{k}]" if rng.random() < 0.5 else f"{r + 1}. {k}" for r, k in enumerate(ids))
            if body.count("[") not in (0, len(ids)):  # one style per output
                body = "\n".join(f"{r + 1}. {k}" for r, k in enumerate(ids))
        elif kind == "mention":
            body = ", ".join(f"Passage {k}" for k in ids)
        else:
            body = " > ".join(f"[{k}]" for k in ids)
        if kind == "chatter":
            body = rng.choice(BEFORE) + body + rng.choice(AFTER)
        elif kind == "think":
            a, b = rng.sample(range(1, n + 1), 2)
            body = f"<think>\nThe query asks about X. Passage [{a}] is on topic, [{b}] less so.\n</think>\n\n" + body
        texts.append(body)
        ns.append(n)
        labels.append(kind)
    return texts, ns, labels


def rank_llm_style(text: str, n: int) -> list[int]:
    """Digits only (every other character becomes a space), split, 1-based -> 0-based, first
    occurrences kept, out-of-range dropped, missing appended in first-stage order."""
    cleaned = "".join(c if c.isdigit() else " " for c in text)
    seen: set[int] = set()
    out: list[int] = []
    for tok in cleaned.split():
        k = int(tok) - 1
        if 0 <= k < n and k not in seen:
            seen.add(k)
            out.append(k)
    return out + [i for i in range(n) if i not in seen]


def timed(f, repeat: int = 1) -> tuple[float, float, object]:
    """(best wall seconds, CPU seconds of that run (all threads of this process), result)."""
    best, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = f()
        w, c = time.perf_counter() - w0, time.process_time() - c0
        if w < best:
            best, cpu = w, c
    return best, cpu, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1_000_000)
    ap.add_argument("--sample", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sample = min(args.sample, args.count)

    t0 = time.perf_counter()
    texts, ns, labels = generate(args.count, args.seed)
    mix = Counter(labels)
    print(f"generated {args.count:,} outputs (seed {args.seed}) in {time.perf_counter() - t0:.1f} s; "
          f"mean {sum(map(len, texts)) / len(texts):.0f} chars; mix: "
          + ", ".join(f"{k} {mix[k] / args.count:.0%}" for k, _ in KINDS))

    t_rust, c_rust, (perms, stats) = timed(lambda: _core.parse_permutations(texts, ns), repeat=3)
    t_loop, c_loop, rust_sub = timed(lambda: [_core.parse_permutation(t, n)[0] for t, n in zip(texts[:sample], ns[:sample])])
    t_ref, c_ref, ref_sub = timed(lambda: [ref.parse_permutation(t, n)[0] for t, n in zip(texts[:sample], ns[:sample])])
    t_peer, c_peer, peer_sub = timed(lambda: [rank_llm_style(t, n) for t, n in zip(texts[:sample], ns[:sample])])

    scale = args.count / sample
    ext = sample < args.count
    rows = [
        ("rust _core.parse_permutations (batch, rayon)", t_rust, c_rust, False),
        ("rust _core.parse_permutation (one call per output)", t_loop * scale, c_loop * scale, ext),
        ("python reference (tests/reference_permutation.py)", t_ref * scale, c_ref * scale, ext),
        ("rank_llm-style digit parser (python, no stats)", t_peer * scale, c_peer * scale, ext),
    ]
    print(f"\nparse {args.count:,} outputs (batch: best of 3; python-loop rows timed on the first {sample:,} "
          f"outputs and extrapolated x{scale:g} where marked *). load average before: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"  {'':<52} {'wall s':>8}    {'CPU s':>7}  {'M outputs/s (wall)':>18}")
    for name, wall, cpu, extrapolated in rows:
        print(f"  {name:<52} {wall:8.2f}{' *' if extrapolated else '  '}  {cpu:7.2f}  {args.count / wall / 1e6:18.2f}")
    for name, secs, csecs in [("python reference", t_ref * scale, c_ref * scale), ("rank_llm-style", t_peer * scale, c_peer * scale)]:
        print(f"  {name} / rust batch: {secs / t_rust:6.1f}x wall, {csecs / c_rust:6.1f}x CPU")
    print(f"  python reference / rust one-call loop: {t_ref / t_loop:6.1f}x wall")

    # Correctness on the timed sample: the batch equals the reference and the single calls.
    bad = sum(perms[i, : ns[i]].tolist() != ref_sub[i] or rust_sub[i] != ref_sub[i] for i in range(sample))
    print(f"\nrust == reference on the {sample:,} timed outputs: {sample - bad:,} / {sample:,}")
    by_kind = Counter()
    agree = Counter()
    for i in range(sample):
        by_kind[labels[i]] += 1
        agree[labels[i]] += peer_sub[i] == ref_sub[i]
    print("rank_llm-style agrees with our parse: " + ", ".join(
        f"{k} {agree[k] / by_kind[k]:.1%}" for k, _ in KINDS if by_kind[k]))
    print("repairs over all outputs: "
          f"{int((stats['duplicates'] > 0).sum()):,} with duplicates, {int((stats['out_of_range'] > 0).sum()):,} with "
          f"invented ids, {int((stats['missing'] > 0).sum()):,} with missing ids, "
          f"{int(stats['unparseable'].sum()):,} unparseable, {int(stats['identity'].sum()):,} identity")

    if LABELS.exists():
        outs = [json.loads(line)["output"] for line in LABELS.read_text(encoding="utf-8").splitlines()]
        ours = _core.parse_permutations(outs, 10)[0].tolist()
        same = sum(a == rank_llm_style(o, 10) for a, o in zip(ours, outs))
        print(f"real Qwen2.5-1.5B SciFact outputs: rank_llm-style agrees on {same} / {len(outs)}")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
