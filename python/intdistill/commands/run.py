"""Run the whole method from a TOML configuration: candidates -> label -> teacher gate -> train ranker ->
ranker check -> train retriever -> index -> evaluate -> RAG -> report, in a work directory with a manifest.

Finished stages are skipped on a rerun (same configuration and inputs); --from reruns from a stage on,
--until stops after one. The teacher gate stops the run (exit 3) when the LLM ranks the candidates worse
than the first stage, and the ranker check when the ranker trained on its labels re-ranks held-out training
lists worse than the first stage, unless --allow-weak-teacher. See intdistill.pipeline for the configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    from intdistill.pipeline import STAGES

    parser.add_argument("config", help="pipeline configuration (TOML); paths in it are relative to it")
    parser.add_argument("--work", help="work directory (default: intdistill-work/<config name>)")
    parser.add_argument("--from", dest="start", choices=STAGES, metavar="STAGE",
                        help=f"rerun from this stage on ({', '.join(STAGES)})")
    parser.add_argument("--until", choices=STAGES, metavar="STAGE", help="stop after this stage")
    parser.add_argument("--allow-weak-teacher", action="store_true", default=None,
                        help="go on training when the teacher gate finds the LLM (or the ranker check its ranker) "
                             "worse than the first stage")


def run(args: argparse.Namespace) -> int:
    from intdistill.cli import EXIT_BAD_INPUT, EXIT_FAILED, Stopped
    from intdistill.pipeline import Pipeline, RunStopped, StageFailed, load_config

    cfg = load_config(args.config)
    work = Path(args.work) if args.work else Path("intdistill-work") / Path(args.config).stem
    pipe = Pipeline(cfg, work, allow_weak_teacher=args.allow_weak_teacher)
    try:
        results = pipe.run(start=args.start, until=args.until)
    except RunStopped as e:
        raise Stopped(f"{e}; finished stages are in {work}") from None
    except StageFailed as e:
        print(f"intdistill run: {e}; finished stages are in {work}; fix it and rerun (they are skipped)",
              file=sys.stderr)
        return EXIT_BAD_INPUT if e.code == 2 else EXIT_FAILED
    ran = [r for r in results if not r.skipped]
    print(f"pipeline: {len(ran)} stages run, {len(results) - len(ran)} skipped, "
          f"{sum(r.seconds for r in ran):.1f}s; work directory {work}", file=sys.stderr)
    summary = summarize(work)
    if summary:
        print(summary)
    return 0


def summarize(work: Path) -> str:
    """The headline numbers of a work directory: gate verdict, ranker check, test retrieval, RAG."""
    from intdistill.report import comparison_table

    out = []
    if (work / "generated-queries.jsonl").is_file():
        out.append("training queries written by the LLM from the corpus: the gate and the ranker check judge by their "
                   "source passages (synthetic judgements); gold-first = source-first")
    gate = _load(work / "gate.json")
    if gate:
        out.append(f"teacher gate: {gate['verdict']} than the first stage ({gate['decision']})"
                   if gate["verdict"] != "no significant difference" else
                   f"teacher gate: no significant difference from the first stage ({gate['decision']})")
    check = _load(work / "ranker-check.json")
    if check:
        for name, r in check.get("reports", {}).items():
            m = r["report"]["main_measure"]
            fs, rk, p = r["report"]["first_stage"][m], r["report"]["teacher"][m], r["report"]["p_values"][m]
            out.append(f"ranker check ({name}, {r['lists']} held-out lists): {m} {fs:.4f} -> {rk:.4f} (p={p:.3g}), "
                       f"{r['verdict']}")
        for name, why in check.get("skipped", {}).items():
            out.append(f"ranker check ({name}): skipped, {why}")
        if check.get("decision") not in (None, "go on"):
            out.append(f"ranker check decision: {check['decision']}")
        trained = _trained_retrievers(work)
        for name, ok in check.get("distill", {}).items():
            if not ok and name in trained:
                out.append(f"{name} retriever: trained anyway (--allow-weak-teacher), though its ranker is not better "
                           "than the first stage on the held-out lists: expect no gain from it")
            elif not ok:
                out.append(f"no {name} retriever: its ranker is not better than the first stage on the held-out "
                           "lists, so stage 2 had nothing to teach (--allow-weak-teacher trains it anyway)")
    ev = _load(work / "evaluate.json")
    if ev:
        out += ["", "test retrieval:", *comparison_table(ev)]
    rag = _load(work / "rag.json")
    if rag and rag.get("scores"):
        out += ["", f"RAG (top {rag['k']} passages):"]
        for name, s in rag["scores"].items():
            t = rag.get("tests", {}).get(name)
            vs = (f"  vs base: EM {t['em']['delta']:+.4f} (p={t['em']['p_value']:.3g}), F1 {t['f1']['delta']:+.4f} "
                  f"(p={t['f1']['p_value']:.3g})") if t else ""
            out.append(f"  {name:<12}" + "  ".join(f"{k} {'n/a' if v is None else (f'{v:.4f}' if isinstance(v, float) else v)}"
                                                   for k, v in s.items()) + vs)
    if (work / "report.md").is_file():
        out += ["", f"report: {work / 'report.md'}"]
    return "\n".join(out)


def _trained_retrievers(work: Path) -> set[str]:
    """The distilled retrievers (llm, gold-first) that the manifest's train-retriever stage trained."""
    from intdistill.pipeline.config import MANIFEST, RETRIEVER_DIRS

    manifest = _load(work / MANIFEST) or {}
    commands = manifest.get("stages", {}).get("train-retriever", {}).get("commands", [])
    outs = {Path(c[c.index("--out") + 1]).resolve() for c in commands if "--out" in c[:-1]}
    return {name for name, d in RETRIEVER_DIRS.items() if (work / d).resolve() in outs}


def _load(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
