"""The ranker check: `intdistill label-report --ranker` (a trained ranker's order vs the first stage's) and the
pipeline's ranker-check stage, which stops before stage 2 when the LLM ranker re-ranks held-out lists worse."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from intdistill import cli
from intdistill.candidates import Candidates
from intdistill.data import Passage, dump_jsonl, load_corpus, load_queries
from intdistill.gate import teacher_report
from intdistill.labels import Label
from intdistill.pipeline import STAGES, GateStopped, Pipeline, PipelineError, load_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_pipeline import FakeCommands, _config  # noqa: E402


def _qa(root: Path, n: int = 6) -> dict[str, Path]:
    """n questions, each with its answer passage and three others; first stage puts the answer second."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = [{"_id": f"d{i}", "title": f"City {i}", "text": f"City{i} is where the person number {i} lives."}
              for i in range(n)]
    queries = [{"_id": f"q{i}", "text": f"Where does person {i} live?", "answers": [f"City{i}"]} for i in range(n)]
    cands = Candidates({f"q{i}": ([f"d{(i + 1) % n}", f"d{i}", f"d{(i + 2) % n}", f"d{(i + 3) % n}"],
                                  [4.0, 3.0, 2.0, 1.0], "") for i in range(n)}, "first-stage")
    paths = {"corpus": root / "corpus.jsonl", "queries": root / "queries.jsonl", "cands": root / "cands.jsonl"}
    dump_jsonl(corpus, paths["corpus"])
    dump_jsonl(queries, paths["queries"])
    cands.save(paths["cands"])
    return paths


def test_label_report_ranker_cli_matches_the_python_api(tmp_path, tiny_bert_dir, capsys):
    from intdistill.gate import ranker_labels
    from intdistill.models import Ranker

    p = _qa(tmp_path / "d")
    argv = ["label-report", "--ranker", str(tiny_bert_dir), "--candidates", str(p["cands"]), "--queries",
            str(p["queries"]), "--corpus", str(p["corpus"]), "--max-length", "32"]
    assert cli.main([*argv, "--format", "json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["subject"] == "ranker" and got["judged_by"] == "answers" and got["n_labels"] == 6
    assert got["first_stage"]["RR@10"] == 0.5 and got["first_stage"]["Acc@1"] == 0.0  # hand: answer at rank 2
    assert sum(map(sum, got["position_counts"])) == 24
    # the same first-stage numbers and lists from the Python API (a plain BERT gets a fresh random head at each
    # load, so the ranker's own numbers differ between the two loads)
    corpus, queries = load_corpus(p["corpus"]), load_queries(p["queries"])
    cands = Candidates.load(p["cands"])
    ranker = Ranker.load(tiny_bert_dir, max_length=32)
    labels = ranker_labels(ranker, {q: (queries[q].text, c.docids) for q, c in cands.items()}, corpus)
    rep = teacher_report(labels, queries=queries, corpus=corpus, subject="ranker")
    assert rep.first_stage == got["first_stage"] and rep.n_judged == got["n_judged"]
    # a label file works as --candidates too: its candidates in first-stage order
    rows = [{"qid": q, "cands": list(c.docids), "output": "[1] > [2]", "model": "m"} for q, c in cands.items()]
    dump_jsonl(rows, tmp_path / "labels.jsonl")
    assert cli.main([*argv[:3], "--candidates", str(tmp_path / "labels.jsonl"), *argv[5:], "--format", "json"]) == 0
    from_labels = json.loads(capsys.readouterr().out)
    assert from_labels["n_labels"] == 6 and from_labels["first_stage"] == got["first_stage"]
    assert cli.main([*argv, "--plot", str(tmp_path / "pos.png")]) == 0
    out = capsys.readouterr().out
    assert "first stage    ranker" in out and "verdict: " in out and "calls repaired" not in out
    assert (tmp_path / "pos.png").stat().st_size > 1000


def test_label_report_ranker_bad_inputs(tmp_path, tiny_bert_dir, capsys):
    p = _qa(tmp_path / "d")
    base = ["--queries", str(p["queries"]), "--corpus", str(p["corpus"])]
    cases = [
        (["--labels", str(p["cands"]), "--ranker", str(tiny_bert_dir), *base], "--labels FILE, or --ranker DIR"),
        (["--ranker", str(tiny_bert_dir), *base], "--ranker needs --candidates"),
        (["--labels", str(p["cands"]), "--candidates", str(p["cands"]), *base], "--candidates goes with --ranker"),
        (["--ranker", str(tmp_path / "absent"), "--candidates", str(p["cands"]), *base],
         "expected a ranker directory or hub name"),
        (["--ranker", str(tiny_bert_dir), "--candidates", str(p["cands"]), "--corpus", str(p["corpus"])],
         "label-report needs --qrels, or --queries"),
    ]
    for args, message in cases:
        assert cli.main(["label-report", *args]) == 2, args
        assert message in capsys.readouterr().err
    # a list whose query has no text anywhere: the candidates file and the query are named
    Candidates({"zz": (["d0"], [1.0], "")}).save(tmp_path / "c2.jsonl")
    assert cli.main(["label-report", "--ranker", str(tiny_bert_dir), "--candidates", str(tmp_path / "c2.jsonl"),
                     *base]) == 2
    err = capsys.readouterr().err
    assert "c2.jsonl" in err and "query 'zz' has no query text (it is not in the --queries file)" in err


# ------------------------------------------------------------------------------------------ the pipeline stage


def _report_json(better: bool, n: int = 30) -> str:
    """A real teacher_report (subject ranker) over n lists: the ranker moves the relevant passage from rank 1
    to rank 2 (worse) or from 2 to 1 (better)."""
    labels, qrels = {}, {}
    for i in range(n):
        cands = (f"a{i}", f"b{i}", f"c{i}")
        labels[f"q{i}"] = Label(f"q{i}", cands, (1, 0, 2), (), "r", "ranker", "")
        qrels[f"q{i}"] = {cands[1] if better else cands[0]: 1}
    return json.dumps(teacher_report(labels, qrels=qrels, n_resamples=500, subject="ranker").to_json())


class ManyQueries(FakeCommands):
    """FakeCommands with 40 training lists; `label` labels the first --max-queries of them; `label-report`
    answers a canned ranker report (worse or better) and records which lists it was given."""

    def __init__(self, ranker_better):
        super().__init__(reverse=False)
        self.ranker_better = ranker_better  # a bool, or {ranker directory name: bool}
        self.checked: dict[str, list[str]] = {}

    def __call__(self, argv):
        if argv[0] == "candidates":
            self.calls.append(argv)
            out = Path(argv[argv.index("--out") + 1])
            Candidates({f"tr-{i}": ([f"p-{i}", "f-0"], [2.0, 1.0], f"question {i}?") for i in range(40)}).save(out)
            return 0, ""
        if argv[0] == "label":
            self.calls.append(argv)
            n = int(argv[argv.index("--max-queries") + 1])
            rows = [{"qid": f"tr-{i}", "cands": [f"p-{i}", "f-0"], "output": "[1] > [2]", "model": "fake"}
                    for i in range(n)]
            dump_jsonl(rows, Path(argv[argv.index("--out") + 1]))
            return 0, ""
        return super().__call__(argv)

    def check_ranker(self, ranker_dir, lists, corpus, cfg, **judges):
        from intdistill.gate import TeacherReport

        self.calls.append(["label-report", "--ranker", str(ranker_dir)])
        ranker = Path(ranker_dir).name
        self.checked[ranker] = list(lists)
        better = self.ranker_better
        d = json.loads(_report_json(better[ranker] if isinstance(better, dict) else better))
        d.pop("verdict")
        return TeacherReport(**{**d, "position_counts": tuple(tuple(r) for r in d["position_counts"])})


LLM = '[llm]\nllm = "http://127.0.0.1:9/v1"\nllm_model = "fake"\n'


def _many(root: Path) -> dict[str, Path]:
    """40 training questions whose answer passage p-i the (fake) first stage puts first, plus test questions."""
    root.mkdir(parents=True, exist_ok=True)
    corpus = [{"_id": f"p-{i}", "text": f"Answer{i} is the answer to question {i}."} for i in range(40)]
    corpus.append({"_id": "f-0", "text": "A filler passage."})
    train = [{"_id": f"tr-{i}", "text": f"question {i}?", "answers": [f"Answer{i}"]} for i in range(40)]
    test = [{"_id": f"te-{i}", "text": f"question {i}?", "answers": [f"Answer{i}"]} for i in range(5)]
    paths = {"corpus": root / "corpus.jsonl", "train": root / "train.jsonl", "test": root / "test.jsonl"}
    for key, rows in (("corpus", corpus), ("train", train), ("test", test)):
        dump_jsonl(rows, paths[key])
    return paths


def _cfg(root: Path, body: str):
    return load_config(_config(root, body, data=_many(root / "data")))


def test_ranker_check_stops_on_a_worse_llm_ranker_then_goes_on_when_allowed(tmp_path):
    cfg = _cfg(tmp_path, LLM + "[label]\nmax_queries = 10\n[reference]\ngold_first = true\nmax_queries = 20\n"
                             "[ranker_check]\nheld_out = 15\n")
    fake = ManyQueries(ranker_better=False)
    with pytest.raises(GateStopped, match="ranker check: no trained ranker re-ranks held-out lists better than the "
                                          "first stage, so there is nothing to distill"):
        Pipeline(cfg, tmp_path / "w", library=fake, echo=False).run()
    # both rankers were judged on the same 15 lists: the last of those neither trained on (tr-25 .. tr-39)
    assert fake.checked == {"ranker": [f"tr-{i}" for i in range(25, 40)],
                            "ranker-gold-first": [f"tr-{i}" for i in range(25, 40)]}
    check = json.loads((tmp_path / "w" / "ranker-check.json").read_text())
    assert check["decision"] == "stop" and check["reports"]["llm"]["verdict"] == "worse"
    assert check["reports"]["llm"]["lines"][-1] == "verdict: the ranker is worse than the first stage on nDCG@10"
    m = json.loads((tmp_path / "w" / "manifest.json").read_text())
    assert m["stages"]["ranker-check"]["status"] == "stopped" and "train-retriever" not in m["stages"]
    # allowed: the check reruns (its key holds --allow-weak-teacher), the rankers are not retrained
    fake.calls.clear()
    Pipeline(cfg, tmp_path / "w", library=fake, echo=False, allow_weak_teacher=True).run()
    assert [c[0] for c in fake.calls][:3] == ["label-report", "label-report", "train-retriever"]
    check = json.loads((tmp_path / "w" / "ranker-check.json").read_text())
    assert check["decision"] == "go on (allowed weak teacher)"
    report = (tmp_path / "w" / "report.md").read_text()
    assert "## Ranker check" in report and "**llm ranker**, 15 held-out lists:" in report
    assert "a ranker re-ranks held-out lists *worse*" in report


def test_ranker_check_distils_only_the_rankers_better_than_the_first_stage(tmp_path):
    cfg = _cfg(tmp_path, LLM + "[label]\nmax_queries = 10\n[reference]\ngold_first = true\nmax_queries = 20\n"
                             "[ranker_check]\nheld_out = 15\n")
    fake = ManyQueries({"ranker": False, "ranker-gold-first": True})
    pipe = Pipeline(cfg, tmp_path / "w", library=fake, echo=False)
    pipe.run(until="index")
    check = json.loads((tmp_path / "w" / "ranker-check.json").read_text())
    assert check["distill"] == {"llm": False, "gold-first": True} and check["decision"] == "go on with gold-first"
    trained = [c[c.index("--ranker") + 1] for c in fake.calls if c[0] == "train-retriever"]
    assert trained == [str(tmp_path / "w" / "ranker-gold-first")]  # no llm retriever
    assert list(pipe.retrievers()) == ["base", "gold-first"]
    from intdistill.commands.run import summarize

    said = summarize(tmp_path / "w")
    assert "no llm retriever: its ranker is not better than the first stage" in said and "no gold-first" not in said
    indexed = [c[c.index("--out") + 1] for c in fake.calls if c[0] == "index"]
    assert indexed == [str(tmp_path / "w" / "index-base"), str(tmp_path / "w" / "index-gold-first")]
    # forcing it afterwards trains the llm retriever: the decision is part of the later stages' keys
    fake.calls.clear()
    Pipeline(cfg, tmp_path / "w", library=fake, echo=False, allow_weak_teacher=True).run(until="train-retriever")
    trained = [c[c.index("--ranker") + 1] for c in fake.calls if c[0] == "train-retriever"]
    assert trained == [str(tmp_path / "w" / "ranker"), str(tmp_path / "w" / "ranker-gold-first")]
    said = summarize(tmp_path / "w")  # the summary says it was trained, not that it is missing
    assert "llm retriever: trained anyway (--allow-weak-teacher), though its ranker is not better" in said
    assert "no llm retriever" not in said


def test_ranker_check_passes_a_better_ranker_and_skips_without_held_out_lists(tmp_path, capsys):
    cfg = _cfg(tmp_path, LLM + "[label]\nmax_queries = 10\n")
    fake = ManyQueries(ranker_better=True)
    Pipeline(cfg, tmp_path / "w", library=fake, echo=False).run(until="ranker-check")
    assert fake.checked == {"ranker": [f"tr-{i}" for i in range(10, 40)]}  # default 100: all 30 unlabelled lists
    check = json.loads((tmp_path / "w" / "ranker-check.json").read_text())
    assert check["decision"] == "go on" and check["reports"]["llm"]["verdict"] == "better"
    from intdistill.commands.run import summarize

    assert "ranker check (llm, 30 held-out lists): nDCG@10 " in summarize(tmp_path / "w")
    # every list labelled: nothing is held out, the check says so and the run goes on
    (tmp_path / "x").mkdir()
    cfg = _cfg(tmp_path / "x", LLM + "[label]\nmax_queries = 40\n")
    fake = ManyQueries(ranker_better=False)
    Pipeline(cfg, tmp_path / "w2", library=fake, echo=False).run(until="train-retriever")
    check = json.loads((tmp_path / "w2" / "ranker-check.json").read_text())
    assert check["reports"] == {} and "every training list was used" in check["skipped"]["llm"]
    assert fake.checked == {} and fake.calls[-1][0] == "train-retriever"
    # held_out = 0 turns it off; a negative value is refused
    cfg = _cfg(tmp_path / "x", LLM + "[label]\nmax_queries = 10\n[ranker_check]\nheld_out = 0\n")
    Pipeline(cfg, tmp_path / "w3", library=ManyQueries(False), echo=False).run(until="ranker-check")
    assert json.loads((tmp_path / "w3" / "ranker-check.json").read_text())["skipped"] == {
        "llm": "[ranker_check] held_out = 0"}
    with pytest.raises(PipelineError, match=r"\[ranker_check\] held_out: expected an integer >= 0, got -1"):
        load_config(_config(tmp_path / "x", "[ranker_check]\nheld_out = -1\n"))
    with pytest.raises(PipelineError, match=r"\[ranker_check\] size: unknown key.*the valid keys of \[ranker_check\] are held_out$"):
        load_config(_config(tmp_path / "x", "[ranker_check]\nsize = 3\n"))
    assert STAGES.index("ranker-check") == STAGES.index("train-ranker") + 1


def test_ranker_check_shows_the_labels_share_of_a_lexical_ranker(tmp_path):
    """A ranker with a lexical term is also judged against its untrained anchor (the first stage + BM25); the
    check records it beside the main report. It informs; the decision stays the main report's."""
    from intdistill.gate import TeacherReport

    class WithAnchor(ManyQueries):
        def check_ranker_and_anchor(self, ranker_dir, lists, corpus, cfg, **judges):
            report = self.check_ranker(ranker_dir, lists, corpus, cfg, **judges)
            if Path(ranker_dir).name != "ranker-gold-first":
                return report, None  # as for a ranker without the term
            d = json.loads(_report_json(False))
            d.pop("verdict")
            return report, TeacherReport(**{**d, "position_counts": tuple(tuple(r) for r in d["position_counts"]),
                                            "baseline": "anchor"})

    cfg = _cfg(tmp_path, LLM + "[label]\nmax_queries = 10\n[reference]\ngold_first = true\nmax_queries = 20\n"
                             "[ranker_check]\nheld_out = 15\n")
    Pipeline(cfg, tmp_path / "w", library=WithAnchor({"ranker": False, "ranker-gold-first": True}),
             echo=False).run(until="ranker-check")
    check = json.loads((tmp_path / "w" / "ranker-check.json").read_text())
    assert "vs_anchor" not in check["reports"]["llm"]
    share = check["reports"]["gold-first"]["vs_anchor"]
    assert share["verdict"] == "worse" and share["report"]["baseline"] == "anchor"
    assert share["lines"][-1] == "verdict: the ranker is worse than the anchor on nDCG@10"
    assert check["distill"] == {"llm": False, "gold-first": True}  # the decision is the main report's
