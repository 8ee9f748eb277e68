#!/usr/bin/env python3
"""Tables and the size-curve PNG for scripts/scifact-distill.sh's work directory.

    python scripts/scifact_report.py [WORK_DIR] [--shared ../shared]

Scores every finished variant's test run with `intdistill evaluate` (paired randomization tests against the
base run), reads each ranker's re-ranking score on the test candidate lists from its metrics.jsonl, and the
timings; writes WORK_DIR/results.md, WORK_DIR/sources.json, WORK_DIR/curve.json and WORK_DIR/curve.png.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
from pathlib import Path

from intdistill import cli
from intdistill.report import comparison_table, plot_curve

MEASURES = ["nDCG@10", "R@100"]
SOURCES = ["gold-first-237", "llm-237", "first-stage-237", "gold-first-809"]
SIZES = [100, 250, 500, 809]


def evaluate(qrels: Path, runs: dict[str, Path]) -> dict:
    argv = ["evaluate", "--qrels", str(qrels), "-m", *MEASURES, "--format", "json"]
    for name, path in runs.items():
        argv += ["--run", f"{name}={path}"]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main(argv)
    if code:
        raise SystemExit(f"intdistill {' '.join(argv)} exited with {code}")
    return json.loads(buf.getvalue())


def ranker_dev(work: Path, name: str) -> dict:
    path = work / name / "ranker" / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows[-1].get("dev", {}) if rows else {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", nargs="?", default="work/scifact-distill")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared"))
    args = ap.parse_args(argv)
    work = Path(args.work)
    qrels = Path(args.shared) / "data/scifact/qrels/test.tsv"
    done = {n for n in [*SOURCES, *(f"gold-first-{s}" for s in SIZES)] if (work / n / "test.trec").is_file()}
    out = ["# SciFact test: base vs distilled retrievers", ""]

    runs = {"base": work / "base.trec", **{n: work / n / "test.trec" for n in SOURCES if n in done}}
    sources = evaluate(qrels, runs)
    (work / "sources.json").write_text(json.dumps(sources, indent=2) + "\n")
    out += ["## Label sources (stage 2 on the ranker's training queries)", "", *comparison_table(sources), ""]
    out += ["Ranker re-ranking the base top-10 of each test query (first-stage order: nDCG@10 0.6451):", "",
            "| ranker | nDCG@10 | RR@10 |", "| --- | --- | --- |"]
    for n in [*SOURCES, *(f"gold-first-{s}" for s in SIZES if s != 809)]:
        if n in done:
            d = ranker_dev(work, n)
            out.append(f"| {n} | {d.get('nDCG@10', float('nan')):.4f} | {d.get('RR@10', float('nan')):.4f} |")
    out.append("")

    sizes = [s for s in SIZES if f"gold-first-{s}" in done]
    if sizes:
        curve_runs = {"base": work / "base.trec", **{f"gold-first-{s}": work / f"gold-first-{s}" / "test.trec"
                                                     for s in sizes}}
        curve = {"sizes": sizes, **evaluate(qrels, curve_runs)}
        (work / "curve.json").write_text(json.dumps(curve, indent=2) + "\n")
        png = plot_curve(curve, work / "curve.png", "SciFact test, gold-first distillation (2-core CPU budget)")
        out += ["## Gold-first training-set-size curve", "", *comparison_table(curve), "", f"![curve]({png.name})", ""]

    timings = work / "timings.tsv"
    if timings.is_file():
        out += ["## Wall-clock per stage (seconds, this machine)", "", "| stage | variant | seconds |",
                "| --- | --- | --- |"]
        with open(timings) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                out.append(f"| {row['stage']} | {row['name']} | {row['seconds']} |")
    (work / "results.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
