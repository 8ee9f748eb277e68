"""The pipeline's configuration (TOML, every key checked at load), its errors and its file helpers."""

from __future__ import annotations

import difflib
import functools
import hashlib
import logging
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from intdistill.data import DataError

logger = logging.getLogger("intdistill.pipeline")

SECTIONS = {"data", "llm", "generate", "train", "candidates", "label", "gate", "ranker", "ranker_check", "retriever", "reference", "index",
            "evaluate", "rag", "curve"}
DEFAULT_HELD_OUT = 100  # [ranker_check] held_out: training lists kept out of both rankers' training, to judge them
MIN_HELD_OUT = 20  # fewer held-out lists than this: the check runs, with a note that it can hardly tell
DATA_KEYS = {"corpus", "train_queries", "test_queries", "train_qrels", "test_qrels"}
MANIFEST = "manifest.json"
RETRIEVER_DIRS = {"llm": "retriever", "gold-first": "retriever-gold-first"}  # ranker name -> its retriever's dir
# pipeline keys of a section that are not options of the stage's command
_OWN_KEYS = {
    "gate": {"allow_weak_teacher"},
    "reference": {"gold_first", "max_queries"},
    "ranker_check": {"held_out"},
    "evaluate": {"depth", "measures", "lexical_weight", "lexical_pool"},
    "rag": {"retrievers"},
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
                          ("ranker_check", "held_out", 0), ("evaluate", "depth", 1), ("evaluate", "lexical_pool", 1)):
        v = sections.get(sec, {}).get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            want = "a positive integer" if low == 1 else "an integer >= 0"
            raise PipelineError(path, None, f"[{sec}] {key}: expected {want}, got {v!r}")
    w = sections.get("evaluate", {}).get("lexical_weight")
    if w is not None:
        from intdistill.lexical import check_weight

        try:
            check_weight(w, "lexical_weight")
        except ValueError:
            raise PipelineError(path, None, f"[evaluate] lexical_weight: expected a number >= 0 (BM25's weight at "
                                            f"query time; 0: dense only), got {w!r}") from None
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


def data_lines(path: Path) -> list[str]:
    """The non-blank lines of a text file."""
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _llm_keys(section: Mapping[str, Any]) -> set[str]:
    return {k for k in section if k.startswith("llm") or k == "api_key_env"}
