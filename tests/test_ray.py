"""Ray (issue 15), on a local cluster the tests start (2 CPUs): corpus encoding on Ray workers equals one
process's, and labelling through two fake endpoints from Ray actors labels every query exactly once with one
cache on the driver (a rerun makes zero calls). Without --ray nothing imports Ray; several endpoints without it
fan out over threads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_openai import FakeOpenAI  # noqa: E402

import intdistill  # noqa: E402
from intdistill import cli  # noqa: E402
from intdistill.labels import load_labels  # noqa: E402

ray = pytest.importorskip("ray", reason="the optional extra intdistill[distributed] (in the test extra)")
PYTHON_DIR = Path(intdistill.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield "auto"  # later --ray auto connects to this cluster
    ray.shutdown()


TEXTS = [f"passage number {i} about {w} and more words" * (1 + i % 3)
         for i, w in enumerate("apple river engine violin glacier pepper castle comet tiger bridge".split())]


def test_encoding_on_ray_workers_equals_one_process(local_ray, tiny_bert_dir, monkeypatch):
    from intdistill import ray_backend
    from intdistill.models import Retriever

    monkeypatch.setattr(ray_backend, "CHUNK", 3)  # 10 texts: 4 chunks over 2 workers
    r = Retriever.load(tiny_bert_dir, device="cpu")
    got = ray_backend.encoder(r, local_ray, workers=2)(TEXTS)
    np.testing.assert_allclose(got, r.encode_passages(TEXTS), atol=1e-5)
    assert got.shape == (10, 32) and ray_backend.encoder(r, local_ray)([]).shape == (0, 32)


def test_cli_candidates_with_ray_equal_without(local_ray, tiny_bert_dir, tmp_path, capsys):
    corpus, queries = tmp_path / "corpus.jsonl", tmp_path / "q.jsonl"
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    queries.write_text("".join(json.dumps({"_id": f"q{i}", "text": f"about {w}"}) + "\n"
                               for i, w in enumerate(["apple", "comet", "tiger"])))
    base = ["candidates", "--corpus", str(corpus), "--queries", str(queries), "-n", "4", "--retriever",
            str(tiny_bert_dir), "--device", "cpu"]
    assert cli.main(base + ["--out", str(tmp_path / "one.jsonl")]) == 0
    assert cli.main(base + ["--out", str(tmp_path / "ray.jsonl"), "--ray", local_ray]) == 0
    one = [json.loads(x) for x in (tmp_path / "one.jsonl").read_text().splitlines()]
    two = [json.loads(x) for x in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert [r["cands"] for r in one] == [r["cands"] for r in two]
    assert [s for r in one for s in r["scores"]] == pytest.approx([s for r in two for s in r["scores"]], abs=1e-5)


def _label_files(tmp_path: Path, n: int):
    corpus = [{"_id": f"d{i}-{j}", "text": f"passage {j} of topic {i}"} for i in range(n) for j in range(3)]
    cands = [{"qid": f"q{i}", "cands": [f"d{i}-{j}" for j in range(3)], "scores": [3.0, 2.0, 1.0],
              "retriever": "toy", "query": f"topic {i}?"} for i in range(n)]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus))
    (tmp_path / "cands.jsonl").write_text("".join(json.dumps(r) + "\n" for r in cands))
    return tmp_path / "corpus.jsonl", tmp_path / "cands.jsonl"


def test_label_through_two_endpoints_from_ray_actors(local_ray, tmp_path, capsys):
    corpus, cands = _label_files(tmp_path, 16)
    out = tmp_path / "labels.jsonl"
    with FakeOpenAI() as a, FakeOpenAI() as b:
        argv = ["label", "--candidates", str(cands), "--corpus", str(corpus), "--out", str(out),
                "--llm-base-url", a.base_url, "--llm-base-url", b.base_url, "--llm-model", "fake-model",
                "--cache", str(tmp_path / "cache.sqlite"), "--concurrency", "2", "--ray", local_ray]
        assert cli.main(argv) == 0
        err = capsys.readouterr().err
        assert "fanning out over 2 endpoints from Ray actors" in err
        assert a.n_requests + b.n_requests == 16 and a.n_requests > 0 and b.n_requests > 0  # each query once
        assert sorted(load_labels(out)) == sorted(f"q{i}" for i in range(16))
        assert "16 calls (0 failed" in err  # one ledger, on the driver
        assert cli.main(argv) == 0  # rerun: every query done, nothing asked
        assert a.n_requests + b.n_requests == 16


def test_two_endpoints_without_ray_fan_out_over_threads_and_import_no_ray(tmp_path):
    corpus, cands = _label_files(tmp_path, 12)
    out = tmp_path / "labels.jsonl"
    with FakeOpenAI() as a, FakeOpenAI() as b:
        script = (
            "import sys\n"
            "from intdistill import cli\n"
            f"code = cli.main(['label', '--candidates', {str(cands)!r}, '--corpus', {str(corpus)!r}, '--out', "
            f"{str(out)!r}, '--llm-base-url', {a.base_url!r}, '--llm-base-url', {b.base_url!r}, '--llm-model', "
            f"'fake-model', '--concurrency', '2'])\n"
            "assert code == 0, code\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n"
        )
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                             env={"PYTHONPATH": str(PYTHON_DIR), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
        assert res.returncode == 0, res.stderr[-2000:]
        assert a.n_requests + b.n_requests == 12 and min(a.n_requests, b.n_requests) >= 3
    assert len(load_labels(out)) == 12 and "fanning out over 2 endpoints" in res.stderr
