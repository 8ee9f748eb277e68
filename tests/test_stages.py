"""The stages layer: configurations built from dataclass fields, and the parse-once memo of one run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from intdistill import data, loaded
from intdistill.stages import CONFIGS, CandidatesConfig, IndexConfig, TrainRankerConfig, TrainRetrieverConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _parser(cls) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=cls.command, exit_on_error=False)
    cls.add_arguments(p)
    return p


def test_the_commands_flags_are_the_configs_fields():
    from intdistill.cli import build_parser

    top = build_parser()
    subparsers = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    for command, cls in CONFIGS.items():
        parser = subparsers.choices[command]
        dests = {a.dest for a in parser._actions if a.dest != "help"}
        assert dests == cls.keys(), command
        # the required flags alone give a configuration whose other values are the fields' defaults
        from dataclasses import fields

        from intdistill.stages.config import _required

        required = [f.name for f in fields(cls) if _required(f)]
        ns = parser.parse_args([x for f in required for x in (cls.flag(f), "3" if f == "n" else "x")])
        cfg = cls.from_args(ns)
        assert cfg == cls(**{f: 3 if f == "n" else "x" for f in required})
        assert cfg.argv() == [command, *(x for f in required for x in (cls.flag(f), "3" if f == "n" else "x"))]


def test_argv_hand_values():
    cfg = CandidatesConfig(corpus="c.jsonl", queries="q.jsonl", n=10, out="o.jsonl")
    assert cfg.argv() == ["candidates", "--corpus", "c.jsonl", "--queries", "q.jsonl", "-n", "10", "--out", "o.jsonl"]
    cfg = CandidatesConfig(corpus="c", queries="q", n=5, out="o", qrels="r.tsv", ray="local", seed=0, batch_size=8)
    assert cfg.argv()[-6:] == ["--qrels", "r.tsv", "--batch-size", "8", "--ray", "local"]
    idx = IndexConfig(corpus="c", out="i", dtype="f16", target_recall=0.98, check_sample=0)
    assert idx.argv() == ["index", "--corpus", "c", "--out", "i", "--dtype", "f16", "--check-sample", "0",
                          "--target-recall", "0.98"]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 500), max_queries=st.none() | st.integers(1, 99), sample=st.none() | st.integers(1, 99),
       seed=st.integers(-5, 5), batch=st.integers(1, 256), retriever=st.none() | st.sampled_from(["r", "dir/x y"]),
       ray=st.none() | st.sampled_from(["local", "auto"]), workers=st.none() | st.integers(1, 8))
def test_argv_parses_back_to_the_same_configuration(n, max_queries, sample, seed, batch, retriever, ray, workers):
    cfg = CandidatesConfig(corpus="c.jsonl", queries="q.jsonl", n=n, out="o.trec", retriever=retriever,
                           max_queries=max_queries, sample=sample, seed=seed, batch_size=batch, ray=ray,
                           ray_workers=workers)
    assert CandidatesConfig.from_args(_parser(CandidatesConfig).parse_args(cfg.argv()[1:])) == cfg


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from(["f32", "f16", "bf16", "i8"]), metric=st.none() | st.sampled_from(["cos", "ip"]),
       m=st.integers(1, 64), ef=st.integers(1, 512), check=st.integers(0, 2000),
       recall=st.none() | st.floats(0.01, 1.0))
def test_index_argv_parses_back(dtype, metric, m, ef, check, recall):
    cfg = IndexConfig(corpus="c", out="o", dtype=dtype, metric=metric, connectivity=m, expansion_search=ef,
                      check_sample=check, target_recall=recall)
    assert IndexConfig.from_args(_parser(IndexConfig).parse_args(cfg.argv()[1:])) == cfg


def test_training_configs_argv_round_trip_and_their_own_defaults():
    ranker = TrainRankerConfig(corpus="c", out="o", label_source="gold-first", candidates="k.jsonl", resume=False,
                               listmle_top="1", no_progress=True, epochs=4)
    argv = ranker.argv()
    assert argv[:5] == ["train-ranker", "--corpus", "c", "--out", "o"]
    assert "--no-resume" in argv and "--no-progress" in argv and argv[argv.index("--epochs") + 1] == "4"
    assert TrainRankerConfig.from_args(_parser(TrainRankerConfig).parse_args(argv[1:])) == ranker
    # each stage keeps the defaults chosen for it
    assert (TrainRankerConfig(corpus="c", out="o").lr, TrainRankerConfig(corpus="c", out="o").batch_size) == (1e-4, 16)
    retr = TrainRetrieverConfig(ranker="r", queries="q", corpus="c", out="o", extra_queries=("a.jsonl", "b.jsonl"),
                                resume=True)
    assert (retr.lr, retr.batch_size, retr.epochs) == (2e-5, 8, 2)
    argv = retr.argv()
    assert argv[:9] == ["train-retriever", "--ranker", "r", "--queries", "q", "--corpus", "c", "--out", "o"]
    assert argv.count("--extra-queries") == 2 and "--resume" in argv
    assert TrainRetrieverConfig.from_args(_parser(TrainRetrieverConfig).parse_args(argv[1:])) == retr
    assert TrainRetrieverConfig.from_args(_parser(TrainRetrieverConfig).parse_args(
        ["--ranker", "r", "--queries", "q", "--corpus", "c", "--out", "o"])).extra_queries == ()
    with pytest.raises(ValueError, match="train-retriever: expected a value for ranker, out"):
        TrainRetrieverConfig(queries="q", corpus="c")
    t = TrainRetrieverConfig.from_table({"tau_student": 0.02, "extra_queries": "x.jsonl", "resume": False},
                                        where="[retriever]", ranker="r", queries="q", corpus="c", out="o")
    assert (t.tau_student, t.extra_queries, t.resume) == (0.02, ("x.jsonl",), False)
    with pytest.raises(ValueError, match=r"\[retriever\] tau_student: expected a positive number, got 0"):
        TrainRetrieverConfig.from_table({"tau_student": 0}, where="[retriever]", ranker="r", queries="q", corpus="c",
                                        out="o")
    with pytest.raises(ValueError, match=r"\[ranker\] resume: expected true or false, got 'yes'"):
        TrainRankerConfig.from_table({"resume": "yes"}, where="[ranker]", corpus="c", out="o")


def test_from_table_converts_and_checks_like_the_flags():
    given_ = dict(corpus="c", queries="q", out="o")
    cfg = CandidatesConfig.from_table({"n": 20, "batch_size": 16, "retriever": "m"}, where="[candidates]", **given_)
    assert (cfg.n, cfg.batch_size, cfg.retriever, cfg.seed) == (20, 16, "m", 0)
    with pytest.raises(ValueError, match=r"\[candidates\] n: expected a positive integer, got 0"):
        CandidatesConfig.from_table({"n": 0}, where="[candidates]", **given_)
    with pytest.raises(ValueError, match=r"\[candidates\] n: expected a positive integer, got 2.5"):
        CandidatesConfig.from_table({"n": 2.5}, where="[candidates]", **given_)
    with pytest.raises(ValueError, match=r"\[candidates\] nn: unknown key; the valid keys are batch_size, "):
        CandidatesConfig.from_table({"nn": 3}, where="[candidates]", **given_)
    with pytest.raises(ValueError, match=r"\[candidates\]: expected a value for n"):
        CandidatesConfig.from_table({}, where="[candidates]", **given_)
    with pytest.raises(ValueError, match=r"\[index\] dtype: expected one of f32, .*got 'f64'"):
        IndexConfig.from_table({"dtype": "f64"}, where="[index]", corpus="c", out="o")
    with pytest.raises(ValueError, match=r"\[index\] target_recall: expected a number in \(0, 1\], got 1.5"):
        IndexConfig.from_table({"target_recall": 1.5}, where="[index]", corpus="c", out="o")


def test_shared_parses_each_unchanged_file_once(tmp_path):
    path = tmp_path / "corpus.jsonl"
    data.dump_jsonl([{"_id": "a", "text": "alpha"}, {"_id": "b", "text": "beta"}], path)
    before = loaded.parse_counts().get("corpus", 0)
    first, second = data.load_corpus(path), data.load_corpus(path)  # outside a run: every call parses
    assert first is not second and loaded.parse_counts()["corpus"] == before + 2
    with loaded.shared():
        one = data.load_corpus(path)
        assert data.load_corpus(str(path)) is one and data.load_corpus(tmp_path / "." / "corpus.jsonl") is one
        assert data.load_corpus(path, skip_empty=True) is not one  # other options: another parse
        with loaded.shared():  # nested: the same memo
            assert data.load_corpus(path) is one
        data.dump_jsonl([{"_id": "a", "text": "alpha"}, {"_id": "c", "text": "gamma, longer"}], path)
        changed = data.load_corpus(path)  # the file was rewritten: parsed again
        assert set(changed) == {"a", "c"} and data.load_corpus(path) is changed
        with pytest.raises(FileNotFoundError, match="absent"):
            data.load_corpus(tmp_path / "absent.jsonl")  # a missing file still raises, every time
    assert loaded.parse_counts()["corpus"] == before + 6  # 2 outside, then one, skip_empty, changed, absent
    assert data.load_corpus(path) is not changed  # outside the block again


def test_candidates_stage_from_the_library_equals_the_command(tmp_path, tiny_bert_dir, capsys):
    from intdistill import cli
    from intdistill.candidates import Candidates
    from intdistill.stages import candidates

    corpus, queries = tmp_path / "c.jsonl", tmp_path / "q.jsonl"
    data.dump_jsonl([{"_id": f"d{i}", "text": f"passage {i} about topic {i % 3}"} for i in range(12)], corpus)
    data.dump_jsonl([{"_id": f"q{i}", "text": f"topic {i}"} for i in range(4)], queries)
    cfg = CandidatesConfig(corpus=str(corpus), queries=str(queries), n=5, out=str(tmp_path / "lib.jsonl"),
                           retriever=str(tiny_bert_dir))
    got = candidates(cfg)
    assert cli.main([*cfg.argv()[:-2], "--out", str(tmp_path / "cli.jsonl"), "--retriever", str(tiny_bert_dir)]) == 0
    capsys.readouterr()
    lib, via_cli = Candidates.load(tmp_path / "lib.jsonl"), Candidates.load(tmp_path / "cli.jsonl")
    assert {q: c.docids for q, c in lib.items()} == {q: c.docids for q, c in via_cli.items()} == \
        {q: c.docids for q, c in got.items()}
    assert json.loads((tmp_path / "lib.jsonl").read_text().splitlines()[0])["qid"] == "q0"


def test_no_module_of_the_package_is_over_500_lines():
    import intdistill

    long = {str(p.relative_to(Path(intdistill.__file__).parent)): n
            for p in Path(intdistill.__file__).parent.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500}
    assert not long, long


def test_the_pipeline_calls_the_library_not_the_command_line():
    import ast
    import subprocess

    import intdistill.pipeline as pipeline

    for path in Path(pipeline.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m == "intdistill.cli" or m.startswith("intdistill.commands") for m in imported), (path, imported)
    # loading and checking a configuration (every table's keys) loads neither, nor does a stage's configuration
    root = Path(__file__).resolve().parents[1]
    code = ("import sys; from intdistill.pipeline import Pipeline, load_config; "
            f"cfg = load_config({str(root / 'examples' / 'squad-mini.toml')!r}); "
            "p = Pipeline(cfg, '/nonexistent/w', echo=False); "
            "from intdistill.stages import CandidatesConfig; p.config(CandidatesConfig, 'candidates', {'n': 3}, "
            "corpus='c', queries='q', out='o'); "
            "print(sorted(m for m in sys.modules if m == 'intdistill.cli' or m.startswith('intdistill.commands'))); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    # no command module, and no torch: checking a configuration's keys takes a fraction of a second
    assert out.stdout.split() == ["[]", "False"]
