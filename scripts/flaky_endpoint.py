#!/usr/bin/env python3
"""`intdistill label` and `intdistill rag` through an endpoint that misbehaves as gateways do (issue 12).

    python scripts/flaky_endpoint.py [--work work/flaky] [--shared ../shared]

Starts the tests' fake OpenAI-compatible server (tests/fake_openai.py, real HTTP on 127.0.0.1) with a fault
plan by request number n: n % 10 == 3 answers HTTP 200 with a body that is not JSON (an nginx HTML error page
and cut-off JSON by turns), n % 10 == 7 answers HTTP 200 with an empty `choices` list, n % 10 == 5 answers
HTTP 500, and n % 50 == 9 answers 429 with Retry-After: 1. Then, each in ONE invocation of the real CLI:

1. `intdistill label` on 200 SciFact train queries (MiniLM top-10 candidates);
2. `intdistill rag` on the 100 test questions of examples/squad-mini (an index of its 189 paragraphs).

Prints each command's summary (stderr) and exit code; the answers are the fake's (a reversed ranking, an
echo), so only the reliability is measured here, not quality.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fake_openai import FakeOpenAI, empty_choices, html, malformed, status  # noqa: E402

from intdistill import cli  # noqa: E402


def fault_plan():
    lock, count = threading.Lock(), [0]

    def rule(body):
        with lock:
            count[0] += 1
            n = count[0]
        if n % 10 == 3:
            return html() if n % 20 == 3 else malformed()
        if n % 10 == 7:
            return empty_choices()
        if n % 10 == 5:
            return status(500)
        if n % 50 == 9:
            return status(429, retry_after=1)
        return None

    return rule


def run(argv: list[str]) -> int:
    print(f"\n$ intdistill {' '.join(argv)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    code = cli.main(argv)
    print(f"exit code {code} after {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return code


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="work/flaky")
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--emb-cache", default="work/emb-cache", help="MiniLM corpus encodings (`candidates --cache-dir`)")
    args = ap.parse_args()
    work, data = Path(args.work), Path(args.shared) / "data"
    work.mkdir(parents=True, exist_ok=True)
    cands = work / "scifact-cands.jsonl"
    if not cands.is_file():
        assert run(["candidates", "--corpus", str(data / "scifact"), "--queries", str(data / "scifact/queries.jsonl"),
                    "--qrels", str(data / "scifact/qrels/train.tsv"), "-n", "10", "--sample", "200",
                    "--out", str(cands), "--cache-dir", args.emb_cache]) == 0
    mini = ROOT / "examples" / "squad-mini"
    index = work / "squad-mini-index"
    if not (index / "meta.json").is_file():
        assert run(["index", "--corpus", str(mini / "corpus.jsonl"), "--out", str(index)]) == 0
    codes = {}
    with FakeOpenAI() as fake:
        fake.rule = fault_plan()
        llm = ["--llm-base-url", fake.base_url, "--llm-model", "fake-model", "--concurrency", "4", "--timeout", "10"]
        for f in work.glob("*.sqlite*"):
            f.unlink()
        for f in (work / "labels.jsonl", work / "rag.jsonl"):
            f.unlink(missing_ok=True)
        codes["label"] = run(["label", "--candidates", str(cands), "--corpus", str(data / "scifact"),
                              "--out", str(work / "labels.jsonl"), "--cache", str(work / "label-cache.sqlite"), *llm])
        n_label = fake.n_requests
        codes["rag"] = run(["rag", "--index", str(index), "--queries", str(mini / "test-queries.jsonl"), "-k", "3",
                            "--out", str(work / "rag.jsonl"), "--cache", str(work / "rag-cache.sqlite"), *llm])
        kinds: dict[str, int] = {}
        for r in fake.requests:
            b = r["behaviour"]
            name = b.kind if b.kind != "status" else f"HTTP {b.status}"
            kinds[name] = kinds.get(name, 0) + 1
    print(f"\nthe fake endpoint answered {n_label} label requests and {sum(kinds.values()) - n_label} rag requests: "
          + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())), file=sys.stderr)
    print(f"exit codes: {codes}", file=sys.stderr)
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
