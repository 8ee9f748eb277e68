"""The pipeline's judging stages: the teacher gate, the ranker check, the test evaluation, RAG, the
training-set-size curve and the report. A mixin of :class:`intdistill.pipeline.core.Pipeline`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from intdistill.data import DataError

from intdistill.pipeline.config import (DEFAULT_HELD_OUT, MIN_HELD_OUT, BudgetStopped, GateStopped, PipelineError,
                                        _atomic_json, _llm_keys, options)


class JudgingStages:
    """Stages that judge what the others made (see :class:`intdistill.pipeline.core.Pipeline`)."""

    def stage_gate(self) -> None:
        from intdistill import data
        from intdistill.gate import plot_positions, teacher_report
        from intdistill.labels import load_labels

        labels = load_labels(self.p("labels.jsonl"))
        if self.train_qrels is not None:
            if self.cfg.generated:
                self.say("teacher gate: judged by the generated queries' source passages (synthetic judgements)")
            report = teacher_report(labels, qrels=data.load_qrels(self.train_qrels))
        else:
            report = teacher_report(labels, queries=data.load_queries(self.train_queries),
                                    corpus=data.load_corpus(self.cfg.data["corpus"]))
        try:
            plot_positions(report, self.p("teacher-positions.png"), title="where the LLM puts each first-stage position")
        except ImportError as e:
            self.say(f"no teacher-positions.png: {e}")
        gate = {"report": report.to_json(), "verdict": report.verdict, "allow_weak_teacher": self.allow_weak,
                "lines": report.lines()}
        worse = report.verdict == "worse"
        gate["decision"] = ("go on (allowed weak teacher)" if worse and self.allow_weak else
                            ("go on without the llm ranker" if self.reference else "stop") if worse else "go on")
        _atomic_json(self.p("gate.json"), gate)
        banner = "!" * 78
        self.say("\n".join(["", "teacher gate: the LLM's order vs the first stage's inside the labelled lists",
                            *report.lines()]))
        if worse:
            self.say("\n".join([banner, f"TEACHER GATE: the LLM is a WORSE ranker than the first stage on "
                                        f"{report.main_measure} (p={report.p_values[report.main_measure]:.3g}). "
                                        "Training on its labels is likely to make the retriever worse.", banner]))
            if gate["decision"] == "stop":
                raise GateStopped("teacher gate: the LLM's rankings are worse than the first stage's; stopped before "
                                  "training. Use a stronger LLM, or pass --allow-weak-teacher to train anyway")
            if not self.allow_weak:
                self.say("teacher gate: no ranker is trained on the LLM's labels; the run goes on with the "
                         "reference ranker only (--allow-weak-teacher trains the llm ranker anyway)")
        elif report.verdict == "no significant difference":
            self.say(f"teacher gate: no significant difference from the first stage over {report.n_judged} judged "
                     "lists: the LLM's labels may not help")

    def held_out_lists(self, n: int) -> dict[str, list[str]]:
        """Ranker name -> up to ``n`` training candidate lists (the last ones) it did not train on. The LLM
        ranker trained on the labelled lists, the gold-first one on the first ``[reference] max_queries`` lists
        (all without it). When enough lists are free of both, both rankers are judged on the same lists."""
        from intdistill.candidates import Candidates
        from intdistill.labels import load_labels

        qids = list(Candidates.load(self.p("candidates.jsonl")))
        used = {"llm": set(load_labels(self.p("labels.jsonl")))} if self.llm_ranker() else {}
        if self.reference:
            m = self.reference_queries()
            used["gold-first"] = set(qids if m is None else qids[:m])
        free = {name: [q for q in qids if q not in u] for name, u in used.items()}
        common = [q for q in qids if not any(q in u for u in used.values())]
        if len(common) >= min(n, MIN_HELD_OUT):
            free = {name: common for name in used}
        return {name: f[-n:] if n else [] for name, f in free.items()}

    def stage_ranker_check(self) -> None:
        from intdistill import data
        from intdistill.candidates import Candidates
        from intdistill.stages import RankerCheck

        n = int(self.cfg.section("ranker_check").get("held_out", DEFAULT_HELD_OUT))
        result: dict[str, Any] = {"held_out": n, "reports": {}, "skipped": {}, "decision": "go on"}
        cands = Candidates.load(self.p("candidates.jsonl"))
        sec = self.cfg.section("ranker")
        scoring = options({k: sec[k] for k in ("max_length", "device") if k in sec})
        check = RankerCheck(max_length=sec.get("max_length"), device=sec.get("device"),
                            cache_dir=str(self.p("emb-cache")), progress=sys.stderr.isatty())
        corpus = data.load_corpus(self.cfg.data["corpus"])
        queries = data.load_queries(self.train_queries)
        qrels = data.load_qrels(self.train_qrels) if self.train_qrels is not None else None
        distil: dict[str, bool] = {}
        for name, held in self.held_out_lists(n).items():
            if not held:
                why = ("[ranker_check] held_out = 0" if n == 0 else
                       "every training list was used to train it: lower [label] or [reference] max_queries "
                       "to keep some out")
                result["skipped"][name] = why
                distil[name] = True
                self.say(f"ranker check of the {name} ranker skipped: {why}; its retriever is trained unchecked")
                continue
            if len(held) < MIN_HELD_OUT:
                self.say(f"ranker check of the {name} ranker: only {len(held)} held-out lists, too few for the "
                         "paired test to tell much")
            path = self.p(f"ranker-check-{name}.jsonl")
            Candidates({q: cands[q] for q in held}, cands.retriever).save(path)
            self.record("ranker-check", ["label-report", "--ranker", self.rankers()[name], "--candidates", path,
                                         "--queries", self.train_queries, "--corpus", self.cfg.data["corpus"],
                                         *self.judge_args("train"), "--format", "json", "--cache-dir",
                                         self.p("emb-cache"), *scoring])
            lists = {q: (queries[q].text if q in queries else cands[q].query, cands[q].docids) for q in held}
            both = getattr(self.lib, "check_ranker_and_anchor", None)  # one load and one scoring for both
            report, anchor = (both(self.rankers()[name], lists, corpus, check, qrels=qrels, queries=queries) if both
                              else (self.lib.check_ranker(self.rankers()[name], lists, corpus, check, qrels=qrels,
                                                          queries=queries), None))
            result["reports"][name] = {"lists": len(held), "report": report.to_json(), "verdict": report.verdict,
                                       "lines": report.lines()}
            self.say("\n".join(["", f"ranker check ({name} ranker): its order vs the first stage's on {len(held)} "
                                    "held-out training lists", *report.lines()]))
            if anchor is not None:  # a lexical term: how much of it is BM25's, how much the labels'
                result["reports"][name]["vs_anchor"] = {"report": anchor.to_json(), "verdict": anchor.verdict,
                                                        "lines": anchor.lines()}
                self.say("\n".join([f"the labels' share ({name} ranker): against its untrained anchor (the first "
                                    "stage + BM25, no labels) on the same lists", *anchor.lines()]))
            distil[name] = report.verdict == "better"
            if report.verdict == "worse":
                banner = "!" * 78
                self.say("\n".join([banner, f"RANKER CHECK: the {name} ranker re-ranks held-out lists WORSE than the "
                                            "first stage. Distilling it would make the retriever worse.", banner]))
            if not distil[name]:
                self.say(f"ranker check: the {name} ranker is not better than the first stage on these lists, so "
                         f"stage 2 has nothing to teach: its retriever is "
                         + ("trained anyway (--allow-weak-teacher)" if self.allow_weak else
                            "not trained (--allow-weak-teacher trains it anyway)"))
        result["distill"] = distil
        kept = [k for k, v in distil.items() if v or self.allow_weak]
        if not kept:
            result["decision"] = "stop"
        elif len(kept) < len(distil):
            result["decision"] = "go on with " + ", ".join(kept)
        elif self.allow_weak and not all(distil.values()):
            result["decision"] = "go on (allowed weak teacher)"
        _atomic_json(self.p("ranker-check.json"), result)
        if result["decision"] == "stop":
            raise GateStopped("ranker check: no trained ranker re-ranks held-out lists better than the first stage, "
                              "so there is nothing to distill; stopped before training a retriever. Pass "
                              "--allow-weak-teacher to train them anyway")

    def _evaluate(self, stage: str, runs: Mapping[str, Path]) -> dict:
        """Evaluate the TREC runs ``name -> path`` on the test split and test each against the first (the base):
        the dict of :meth:`intdistill.significance.Comparison.to_dict`."""
        from intdistill import data
        from intdistill.metrics import default_measures

        sec = self.cfg.section("evaluate")
        by_qrels = self.cfg.judged_by == "qrels"
        measures = sec.get("measures") or list(default_measures("test", qrels=by_qrels))
        judge = (["--qrels", self.cfg.data["test_qrels"]] if by_qrels else
                 ["--queries", self.cfg.data["test_queries"], "--corpus", self.cfg.data["corpus"]])
        self.record(stage, ["evaluate", *judge, "-m", *measures, "--format", "json",
                            *(a for name, run in runs.items() for a in ("--run", f"{name}={run}"))])
        try:
            comparison = self.lib.compare_runs(
                {name: data.load_run(path) for name, path in runs.items()}, measures,
                qrels=data.load_qrels(self.cfg.data["test_qrels"]) if by_qrels else None,
                queries=None if by_qrels else data.load_queries(self.cfg.data["test_queries"]),
                corpus=None if by_qrels else data.load_corpus(self.cfg.data["corpus"]))
        except ValueError as e:
            if isinstance(e, DataError):
                raise
            raise PipelineError(self.cfg.path, None, f"[evaluate]: {e}") from None
        return comparison.to_dict()

    def stage_evaluate(self) -> None:
        """Each retriever's test run and the paired tests against the base. With ``[evaluate] lexical_weight``
        W > 0, each retriever is also judged with BM25 at query time (``NAME+bm25``: its top ``lexical_pool``
        re-scored as ``intdistill search --lexical-weight W`` does), from the same search."""
        sec = self.cfg.section("evaluate")
        depth = int(sec.get("depth", 100))
        weight = float(sec.get("lexical_weight", 0))
        from intdistill import data
        from intdistill.candidates import (CandidateList, Candidates, corpus_bm25, describe_hybrid, lexical_rescore,
                                           rescore_pool)
        from intdistill.significance import Comparison, PairedTest
        runs, hybrids = {}, {}
        queries = data.load_queries(self.cfg.data["test_queries"])
        corpus = bm25 = None
        pool = depth
        if weight > 0:
            corpus = data.load_corpus(self.cfg.data["corpus"])
            pool = rescore_pool(depth, int(sec.get("lexical_pool", 100)), len(corpus))
            bm25 = corpus_bm25(corpus)
        self.p("runs").mkdir(parents=True, exist_ok=True)
        for name in self.retrievers():
            runs[name] = self.p("runs", f"{name}.trec")
            self.record("evaluate", ["search", "--index", self.index_of(name), "--queries",
                                     self.cfg.data["test_queries"], "-k", depth, "--out", runs[name]])
            found = self.lib.search(self.lib.open_index(self.index_of(name), pool), queries, pool,
                                    progress=sys.stderr.isatty())
            dense = Candidates({q: CandidateList(cl.docids[:depth], cl.scores[:depth], cl.query)
                                for q, cl in found.items()}, found.retriever)
            data.save_run(dense.to_run(), runs[name])
            self.say(f"{name}: {len(dense)} test queries x {depth} passages -> {runs[name]}")
            if weight > 0:
                hybrid = hybrids[f"{name}+bm25"] = self.p("runs", f"{name}+bm25.trec")
                self.record("evaluate", ["search", "--index", self.index_of(name), "--queries",
                                         self.cfg.data["test_queries"], "-k", depth, "--lexical-weight", weight,
                                         "--lexical-pool", pool, "--out", hybrid])
                data.save_run(lexical_rescore(found, corpus, weight, depth, bm25=bm25).to_run(), hybrid)
                self.say(f"{name}+bm25: {describe_hybrid(pool, weight)} -> {hybrid}")
        result = self._evaluate("evaluate", {**runs, **hybrids})  # the base's dense run first: the baseline
        if weight > 0:
            result["hybrid"] = {"lexical_weight": weight, "lexical_pool": pool}
        _atomic_json(self.p("evaluate.json"), result)
        comp = Comparison(result["baseline"], tuple(result["measures"]), result["means"],
                          {r: {m: PairedTest(**t) for m, t in ts.items()} for r, ts in result["tests"].items()})
        self.say("test retrieval (paired randomization tests against the base):\n" + comp.to_markdown())
        worse = [(r, m) for r, ts in comp.tests.items() for m, t in ts.items() if t.verdict() == "worse"]
        if worse:
            self.say("!" * 78 + "\nWARNING: significantly WORSE than the base retriever: "
                     + ", ".join(f"{r} on {m}" for r, m in worse) + ". Keep using the base retriever for these.\n"
                     + "!" * 78)

    def stage_rag(self) -> None:
        from intdistill.stages.llm_steps import RagConfig

        sec = self.cfg.section("rag")
        names = [n for n in (sec.pop("retrievers", None) or ["base", "llm"]) if n in self.retrievers()]
        sec.setdefault("k", 3)
        sec = {k: v for k, v in sec.items() if k not in _llm_keys(sec)}
        scores, k = {}, None
        for name in names:
            cfg = self.config(RagConfig, "rag", {**sec, **self.llm_table("rag")},
                              index=str(self.index_of(name)), queries=str(self.cfg.data["test_queries"]),
                              corpus=str(self.cfg.data["corpus"]), out=str(self.p(f"rag-{name}.jsonl")))
            k = cfg.k
            argv = self.record("rag", cfg.argv())
            self.say(f"$ intdistill {' '.join(argv)}")
            result = self.lib.rag(cfg)
            if result.stopped:
                raise BudgetStopped(f"stage rag: {result.stopped}; predictions so far are in {cfg.out}, rerun to go on")
            if result.failed:
                self.manifest["stages"]["rag"]["failed_items"] = True
                self._save_manifest()
            scores[name] = {**result.measures(), "scored": result.n_scored}
        _atomic_json(self.p("rag.json"), {"k": k if k is not None else int(sec["k"]), "scores": scores,
                                          "tests": self._rag_tests(names)})

    def _rag_tests(self, names: Sequence[str]) -> dict:
        """Paired randomization tests of each retriever's per-question EM and F1 against the base's."""
        from intdistill.metrics import paired_test
        from intdistill.rag import load_predictions

        if "base" not in names:
            return {}
        preds = {n: load_predictions(self.p(f"rag-{n}.jsonl")) for n in names}
        tests = {}
        for n in names:
            if n == "base":
                continue
            common = [q for q, r in preds["base"].items() if r.scored and q in preds[n] and preds[n][q].scored]
            if not common:
                continue
            tests[n] = {m: paired_test({q: getattr(preds["base"][q], m) for q in common},
                                       {q: getattr(preds[n][q], m) for q in common})._asdict() for m in ("em", "f1")}
        return tests

    def stage_curve(self) -> None:
        sizes = self.cfg.section("curve").get("sizes")
        if not sizes:
            self.say("no [curve] sizes: skipped")
            return
        from intdistill.stages import CandidatesConfig

        depth = int(self.cfg.section("evaluate").get("depth", 100))
        test = dict(corpus=str(self.cfg.data["corpus"]), queries=str(self.cfg.data["test_queries"]), n=depth,
                    **({"qrels": str(self.cfg.data["test_qrels"])} if self.cfg.data.get("test_qrels") else {}))
        runs = {"base": self.p("curve", "base.trec")}
        self.p("curve").mkdir(parents=True, exist_ok=True)
        base = CandidatesConfig(**test, out=str(runs["base"]), cache_dir=str(self.p("emb-cache")),
                                retriever=str(self.base_retriever) if self.base_retriever else None)
        self.record("curve", base.argv())
        self.lib.candidates(base)
        for n in sizes:
            d = self.p("curve", f"gold-first-{n}")
            self.train("curve", self._ranker_config(
                label_source="gold-first", candidates=str(self.p("candidates.jsonl")), max_queries=n,
                out=str(d / "ranker"), **({"qrels": str(self.train_qrels)} if self.train_qrels else {})))
            self.train("curve", self._retriever_config(ranker=str(d / "ranker"), out=str(d / "retriever"),
                                                       max_queries=n))
            run = CandidatesConfig(**test, retriever=str(d / "retriever"), out=str(d / "test.trec"))
            self.record("curve", run.argv())
            self.lib.candidates(run)
            runs[f"gold-first-{n}"] = d / "test.trec"
        _atomic_json(self.p("curve.json"), {"sizes": sizes, **self._evaluate("curve", runs)})

    def stage_report(self) -> None:
        from intdistill.report import write_report

        path = write_report(self.work, self.manifest)
        self.say(f"report: {path}")
