#!/usr/bin/env python3
"""Tables and the size-curve PNG for scripts/scifact-distill.sh's work directory.

    python scripts/scifact_report.py [WORK_DIR] [--shared ../shared]

Scores every finished variant's test run with `intdistill evaluate` (paired randomization tests against the
base run), shows each ranker's check (its order of the 100 held-out TRAINING lists vs the first stage's) and,
for information only, its re-ranking of the base's test top 10, and the timings; writes WORK_DIR/results.md,
WORK_DIR/sources.json, WORK_DIR/curve.json and WORK_DIR/curve.png.
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
SOURCES = ["gold-first-809", "first-stage-809", "llm-237"]
SIZES = [100, 250, 500, 809]


def _cli_json(argv: list[str]) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main(argv)
    if code:
        raise SystemExit(f"intdistill {' '.join(argv)} exited with {code}")
    return json.loads(buf.getvalue())


def evaluate(qrels: Path, runs: dict[str, Path]) -> dict:
    argv = ["evaluate", "--qrels", str(qrels), "-m", *MEASURES, "--format", "json"]
    for name, path in runs.items():
        argv += ["--run", f"{name}={path}"]
    return _cli_json(argv)


def test_rerank(work: Path, name: str, shared: Path) -> dict:
    """The ranker's order of the base's test top 10 (reported, never used to choose anything); cached."""
    path = work / name / "test-rerank.json"
    if not path.is_file():
        d = _cli_json(["label-report", "--ranker", str(work / name / "ranker"), "--candidates",
                       str(work / "test-cands.jsonl"), "--qrels", str(shared / "data/scifact/qrels/test.tsv"),
                       "--corpus", str(shared / "data/scifact"), "--cache-dir", "work/emb-cache", "--format", "json"])
        path.write_text(json.dumps(d) + "\n")
    return json.loads(path.read_text())


def test_ndcg10(work: Path, qrels: Path, name: str) -> float:
    """A variant's test nDCG@10 (mean over the 300 test queries)."""
    return evaluate(qrels, {name: work / name / "test.trec"})["mean"]["nDCG@10"]  # one run: no comparison


def plot_ranker_curve(points: list, path: Path) -> Path:
    """Held-out ranker nDCG@10 against the number of labelled lists, each point marked with its check verdict."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    sizes = [p[0] if p[0] != 809 else 709 for p in points]
    ax.plot(sizes, [p[2] for p in points], marker="o", label="gold-first ranker, held-out lists")
    ax.axhline(points[0][1], ls="--", lw=1, color="grey", label="first stage (MiniLM), same lists")
    for x, p in zip(sizes, points):
        ax.annotate(p[3], (x, p[2]), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    tests = [(x, p[4]) for x, p in zip(sizes, points) if p[4] is not None]
    if tests:
        ax.plot([t[0] for t in tests], [t[1] for t in tests], marker="s", ls=":",
                label="its retriever, test nDCG@10")
    ax.set_xlabel("labelled training lists the ranker learned")
    ax.set_ylabel("nDCG@10")
    ax.margins(x=0.12, y=0.15)
    ax.set_title("SciFact, gold-first rankers by training-set size (2-core CPU)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", nargs="?", default="work/scifact-distill")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared"))
    args = ap.parse_args(argv)
    work, shared = Path(args.work), Path(args.shared)
    qrels = shared / "data/scifact/qrels/test.tsv"
    names = [*SOURCES, *(f"gold-first-{s}" for s in SIZES if s != 809)]
    checked = [n for n in names if (work / n / "check.json").is_file()]
    done = {n for n in names if (work / n / "test.trec").is_file()}
    out = ["# SciFact test: base vs distilled retrievers", ""]

    out += ["## Ranker checks (100 held-out training lists) and test re-ranking (information only)", "",
            "| ranker | held-out nDCG@10: first stage -> ranker | p | verdict | retriever trained | "
            "test top-10 re-ranked: first stage -> ranker |", "| --- | --- | --- | --- | --- | --- |"]
    for n in checked:
        c = json.loads((work / n / "check.json").read_text())
        m = c["main_measure"]
        t = test_rerank(work, n, shared)
        out.append(f"| {n} | {c['first_stage'][m]:.4f} -> {c['teacher'][m]:.4f} | {c['p_values'][m]:.4f} | "
                   f"{c['verdict']} | {'yes' if n in done else 'no'} | "
                   f"{t['first_stage'][m]:.4f} -> {t['teacher'][m]:.4f} |")
    out.append("")

    runs = {"base": work / "base.trec", **{n: work / n / "test.trec" for n in SOURCES if n in done}}
    sources = evaluate(qrels, runs)
    (work / "sources.json").write_text(json.dumps(sources, indent=2) + "\n")
    out += ["## Test retrieval (300 queries; stage 2 over all 809 train queries)", "", *comparison_table(sources), ""]

    key = {809: "gold-first-809"}
    sizes = [s for s in SIZES if key.get(s, f"gold-first-{s}") in done]
    if sizes:
        curve_runs = {"base": work / "base.trec",
                      **{f"gold-first-{s}": work / key.get(s, f"gold-first-{s}") / "test.trec" for s in sizes}}
        curve = {"sizes": sizes, **evaluate(qrels, curve_runs)}
        (work / "curve.json").write_text(json.dumps(curve, indent=2) + "\n")
        png = plot_curve(curve, work / "curve.png", "SciFact test, gold-first distillation (2-core CPU)")
        out += ["## Gold-first training-set-size curve", "", *comparison_table(curve), "", f"![curve]({png.name})", ""]

    ranked = [s for s in SIZES if (work / key.get(s, f"gold-first-{s}") / "check.json").is_file()]
    if ranked:
        out += ["## Gold-first rankers by training-set size (the 100 held-out training lists)", "",
                "| labelled lists | held-out nDCG@10: first stage -> ranker | p | verdict | retriever test nDCG@10 |",
                "| --- | --- | --- | --- | --- |"]
        points = []
        for s in ranked:
            n = key.get(s, f"gold-first-{s}")
            c = json.loads((work / n / "check.json").read_text())
            m = c["main_measure"]
            test = test_ndcg10(work, qrels, n) if n in done else None
            short = {"better": "better", "worse": "worse"}.get(c["verdict"], "n.s.")
            points.append((s, c["first_stage"][m], c["teacher"][m], f"{short} (p={c['p_values'][m]:.2g})", test))
            out.append(f"| {s if s != 809 else 709} | {c['first_stage'][m]:.4f} -> {c['teacher'][m]:.4f} | "
                       f"{c['p_values'][m]:.4f} | {c['verdict']} | {'-' if test is None else f'{test:.4f}'} |")
        png = plot_ranker_curve(points, work / "ranker-curve.png")
        out += ["", "(gold-first-809's ranker learns 709 lists; stage 2 runs over all 809 train queries.)", "",
                f"![ranker curve]({png.name})", ""]

    timings = work / "timings.tsv"
    if timings.is_file():
        out += ["## Wall-clock per stage (seconds, this machine)", "", "| stage | variant | seconds |",
                "| --- | --- | --- |"]
        total: dict[str, float] = {}
        with open(timings) as f:
            for row in csv.DictReader(f, delimiter="\t"):
                out.append(f"| {row['stage']} | {row['name']} | {row['seconds']} |")
                total[row["name"]] = total.get(row["name"], 0.0) + float(row["seconds"])
        out += ["", "Per variant (ranker + check + retriever + test run): "
                + ", ".join(f"{k} {v / 60:.1f} min" for k, v in total.items() if k in names)]
    (work / "results.md").write_text("\n".join(out) + "\n")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
