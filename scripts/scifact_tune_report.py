#!/usr/bin/env python3
"""The tables of scripts/scifact-tune.sh's work directory (held-out TRAINING data only).

    python scripts/scifact_tune_report.py [WORK_DIR]

Rankers: each `r-*` run's check (its order of the 100 held-out lists vs the first stage's, paired test).
Stage 2: each `s-*` run's dev retrieval (the 100 held-out queries over the whole corpus) per epoch, against
the base retriever's, scored with `intdistill evaluate`. Training seconds from timings.tsv. Writes
WORK_DIR/tune.md and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
from pathlib import Path

from intdistill import cli


def base_dev(work: Path) -> dict[str, float]:
    buf = io.StringIO()
    argv = ["evaluate", "--qrels", str(work / "heldout-qrels.tsv"), "--run", str(work / "base-heldout.trec"),
            "-m", "nDCG@10", "R@100", "--format", "json"]
    with contextlib.redirect_stdout(buf):
        if cli.main(argv):
            raise SystemExit(f"intdistill {' '.join(argv)} failed")
    return json.loads(buf.getvalue())["mean"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", nargs="?", default="work/scifact-tune")
    work = Path(ap.parse_args(argv).work)
    seconds = {}
    if (work / "timings.tsv").is_file():
        with open(work / "timings.tsv") as f:
            seconds = {r["run"]: float(r["seconds"]) for r in csv.DictReader(f, delimiter="\t")}
    out = ["# SciFact, held-out training data: rankers and stage 2", "",
           "Rankers: gold-first, trained on 709 train queries; their order of the other 100 train queries' "
           "candidate lists vs the first stage's (paired randomization test).", "",
           "| ranker | lists | nDCG@10 first stage | nDCG@10 ranker | delta | p | RR@10 ranker | train s |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for d in sorted(work.glob("r-*")):
        if not (d / "check.json").is_file():
            continue
        c = json.loads((d / "check.json").read_text())
        m = c["main_measure"]
        fs, rk = c["first_stage"][m], c["teacher"][m]
        rr = c["teacher"].get("RR@10", float("nan"))
        out.append(f"| {d.name} | {c['n_judged']} | {fs:.4f} | {rk:.4f} | {rk - fs:+.4f} | {c['p_values'][m]:.4f} | "
                   f"{rr:.4f} | {seconds.get(d.name, float('nan')):.0f} |")
    base = base_dev(work) if (work / "base-heldout.trec").is_file() else {}
    out += ["", "Stage 2: retrievers distilled over the same 709 queries; retrieval over the whole corpus for the "
                "100 held-out queries, after each epoch.", "",
            f"base all-MiniLM-L6-v2: nDCG@10 {base.get('nDCG@10', float('nan')):.4f}, "
            f"R@100 {base.get('R@100', float('nan')):.4f}", "",
            "| run | epoch | nDCG@10 | vs base | R@100 | train s (with dev evaluations) |", "| --- | --- | --- | --- | --- | --- |"]
    for d in sorted(work.glob("s-*")):
        path = d / "retriever" / "metrics.jsonl"
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            h = json.loads(line)
            dev = h.get("dev", {})
            if "nDCG@10" not in dev:
                continue
            out.append(f"| {d.name} | {h['epoch']} | {dev['nDCG@10']:.4f} | "
                       f"{dev['nDCG@10'] - base.get('nDCG@10', 0.0):+.4f} | {dev.get('R@100', float('nan')):.4f} | "
                       f"{seconds.get(d.name, float('nan')):.0f} |")
    text = "\n".join(out) + "\n"
    (work / "tune.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
