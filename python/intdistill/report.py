"""``report.md`` of a pipeline work directory, with PNG plots beside it.

Reads what the stages left (``gate.json``, ``ranker-check.json``, ``evaluate.json``, ``rag.json``, ``curve.json``,
``manifest.json``) and writes tables a reviewer can check against those files, plus ``retrieval.png``, ``rag.png`` and
``curve.png`` (matplotlib, Agg backend) where there is something to plot. Missing pieces are said to be missing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping

from intdistill.significance import SAME, WORSE, verdict


def _load(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _plt():
    try:
        import matplotlib
    except ImportError:  # the tables are written anyway
        raise ImportError("PNG plots need matplotlib: pip install 'intdistill[plot]'") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def comparison_table(result: Mapping) -> list[str]:
    """Markdown rows of an evaluate/curve JSON: means, and change with p-value against the baseline."""
    measures = result["measures"]
    lines = ["| retriever | " + " | ".join(measures) + " |", "|" + " --- |" * (len(measures) + 1)]
    for run, means in result["means"].items():
        cells = []
        for m in measures:
            cell = f"{means[m]:.4f}"
            t = result.get("tests", {}).get(run, {}).get(m)
            if t:
                v = verdict(t["delta"], t["p_value"])
                mark = f" **{v}**" if v != SAME else ""
                cell += f" ({t['delta']:+.4f}, p={t['p_value']:.3g}){mark}"
            cells.append(cell)
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return lines


def plot_bars(groups: Mapping[str, Mapping[str, float]], path: Path, title: str, ylabel: str = "") -> Path:
    """Grouped bars: one group per measure, one bar per run."""
    import numpy as np

    plt = _plt()
    runs = list(groups)
    measures = list(next(iter(groups.values())))
    x = np.arange(len(measures))
    width = 0.8 / max(len(runs), 1)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(measures), 3.6))
    for i, run in enumerate(runs):
        vals = [groups[run][m] if groups[run].get(m) is not None else 0.0 for m in measures]
        bars = ax.bar(x + (i - (len(runs) - 1) / 2) * width, vals, width, label=run)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=1)
    ax.set_xticks(x, measures)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=max(len(runs), 1), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curve(curve: Mapping, path: Path, title: str) -> Path:
    """Each measure against the number of labelled training queries, with the base as a dashed line."""
    plt = _plt()
    sizes = curve["sizes"]
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for m in curve["measures"]:
        ys = [curve["means"][f"gold-first-{n}"][m] for n in sizes]
        line, = ax.plot(sizes, ys, marker="o", label=m)
        ax.axhline(curve["means"]["base"][m], ls="--", lw=1, color=line.get_color())
    ax.set_xlabel("labelled training queries (gold-first)")
    ax.set_ylabel("test score (dashed: base retriever)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _figure(name: str, make) -> str:
    """Markdown for a plot made by ``make()``, or a note saying why there is none."""
    try:
        return f"![{name}]({make().name})"
    except ImportError as e:
        return f"(no {name} plot: {e})"


def write_report(work: str | Path, manifest: Mapping | None = None) -> Path:
    """Write ``<work>/report.md`` (and its PNGs) from the stage outputs in ``work``; returns its path."""
    work = Path(work)
    manifest = manifest or _load(work / "manifest.json") or {}
    out = ["# intdistill pipeline report", ""]
    out.append(f"Configuration: `{manifest.get('config_path', '?')}` (sha256 {str(manifest.get('config_sha256', '?'))[:16]}); "
               f"written {time.strftime('%Y-%m-%d %H:%M:%S')}.")
    v = manifest.get("versions", {})
    if v:
        out.append("Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if k != "platform") + ".")
    out.append("")

    if "generate" in (manifest.get("config") or {}):
        n = sum(1 for line in (work / "generated-queries.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()) if (work / "generated-queries.jsonl").is_file() else 0
        out += [f"Training queries: **{n} written by the LLM from the corpus** (`generated-queries.jsonl`). The "
                "teacher gate and the ranker check below judge them by the passage each was written from: "
                "**synthetic judgements**. The test queries and their judgements are real; they stay the final "
                "judge. The gold-first reference here is source-first (the source passage first).", ""]

    gate = _load(work / "gate.json")
    out += ["## Teacher gate", ""]
    if gate:
        out += ["```", *gate["lines"], "```", "", f"Decision: **{gate['decision']}**."]
        if gate["verdict"] == "worse":
            out.append("")
            out.append("> **Warning:** the LLM ranks the candidates *worse* than the first-stage retriever. "
                       "Retrievers distilled from its labels are likely to be worse than the base; compare below.")
        if (work / "teacher-positions.png").is_file():
            out += ["", "![where the LLM puts each first-stage position](teacher-positions.png)"]
    else:
        out.append("Not run.")
    out.append("")

    check = _load(work / "ranker-check.json")
    out += ["## Ranker check", ""]
    if check:
        out += ["Each trained ranker's order vs the first stage's, on training lists it did not train on (a ranker "
                "that is not better than the first stage cannot teach the retriever to be).", ""]
        for name, r in check.get("reports", {}).items():
            out += [f"**{name} ranker**, {r['lists']} held-out lists:", "", "```", *r["lines"], "```", ""]
        for name, why in check.get("skipped", {}).items():
            out += [f"**{name} ranker**: not checked: {why}.", ""]
        out.append(f"Decision: **{check['decision']}**.")
        skipped = [n for n, ok in check.get("distill", {}).items() if not ok]
        if skipped:
            out += ["", "Not distilled (stage 2 has nothing to teach when the ranker is not better than the first "
                        "stage; `--allow-weak-teacher` trains them anyway): " + ", ".join(skipped) + "."]
        if any(r["verdict"] == "worse" for r in check.get("reports", {}).values()):
            out += ["", "> **Warning:** a ranker re-ranks held-out lists *worse* than the first stage; the retriever "
                        "distilled from it is likely to be worse than the base."]
    else:
        out.append("Not run.")
    out.append("")

    ev = _load(work / "evaluate.json")
    out += ["## Retrieval on the test queries", ""]
    if ev:
        out += ["Each distilled retriever against the base: change and paired randomization-test p-value.", "",
                *comparison_table(ev)]
        if ev.get("hybrid"):
            from intdistill.candidates import describe_hybrid

            h = ev["hybrid"]
            out += ["", f"`NAME+bm25`: the same retriever with BM25 at query time, "
                        f"{describe_hybrid(h['lexical_pool'], h['lexical_weight'])}; serve it with "
                        f"`intdistill search --lexical-weight {h['lexical_weight']:g}` (or `rag`, `ask`)."]
        out += ["", _figure("retrieval", lambda: plot_bars(ev["means"], work / "retrieval.png", "test retrieval"))]
        worse = [f"{r} on {m}" for r, ts in ev.get("tests", {}).items() for m, t in ts.items()
                 if verdict(t["delta"], t["p_value"]) == WORSE]
        if worse:
            out += ["", "> **Warning:** significantly worse than the base retriever: " + ", ".join(worse)
                    + ". Keep the base retriever for these."]
    else:
        out.append("Not run.")
    out.append("")

    rag = _load(work / "rag.json")
    out += ["## Retrieval-augmented QA", ""]
    if rag and rag.get("scores"):
        names = list(rag["scores"])
        keys = [k for k in next(iter(rag["scores"].values())) if k != "scored"]
        out += [f"Reader answers from the top {rag['k']} passages; SQuAD EM/F1 against the gold answers.", "",
                "| retriever | " + " | ".join(keys) + " | scored |", "|" + " --- |" * (len(keys) + 2)]
        for n in names:
            s = rag["scores"][n]
            out.append(f"| {n} | " + " | ".join("n/a" if s.get(k) is None else f"{s[k]:.4f}" for k in keys)
                       + f" | {s.get('scored', '?')} |")
        for n, ts in rag.get("tests", {}).items():
            out.append("")
            out.append(f"{n} vs base over the same {ts['f1']['n']} questions (paired randomization test): "
                       f"EM {ts['em']['delta']:+.4f} (p={ts['em']['p_value']:.3g}), "
                       f"F1 {ts['f1']['delta']:+.4f} (p={ts['f1']['p_value']:.3g}).")
        plottable = {n: {k: rag["scores"][n].get(k) for k in keys} for n in names}
        out += ["", _figure("rag", lambda: plot_bars(plottable, work / "rag.png", "RAG answers"))]
    else:
        out.append("Not run.")
    out.append("")

    curve = _load(work / "curve.json")
    if curve:
        out += ["## Training-set-size curve (gold-first)", "", *comparison_table(curve), "",
                _figure("curve", lambda: plot_curve(curve, work / "curve.png", "gold-first: test score vs labelled queries")),
                ""]

    stages = manifest.get("stages", {})
    if stages:
        out += ["## Stages", "", "| stage | status | seconds |", "| --- | --- | --- |"]
        total = 0.0
        for name, rec in stages.items():
            if name == "report":  # this stage, being written now
                continue
            secs = rec.get("seconds")
            total += secs or 0.0
            out.append(f"| {name} | {rec.get('status', '?')} | {secs if secs is not None else '-'} |")
        out += [f"| all | | {total:.1f} |", ""]
    path = work / "report.md"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path
