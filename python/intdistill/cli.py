"""The ``intdistill`` command.

Each subcommand lives in ``intdistill.commands.<name>`` with ``configure(parser)`` and ``run(args) -> int``;
importing one must stay cheap (no torch at import time). Data goes to stdout; diagnostics and progress
go to stderr.

Exit codes (fixed):
  0  success
  1  the work failed (a model, the LLM endpoint, an unexpected error)
  2  bad usage or bad input data (the message names the file, line and what was expected)
  3  stopped on purpose with everything saved (a budget such as --max-calls/--max-cost, or a gate)
  4  finished, but some items failed (their LLM calls failed after every retry): they are listed in the
     output's .failed.jsonl sidecar, and rerunning the same command retries only them
  130 interrupted (Ctrl-C); everything finished so far is saved
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED, EXIT_ITEMS_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

# name -> (module, one-line help). A command module adds its own line here.
COMMANDS: dict[str, tuple[str, str]] = {
    "candidates": ("intdistill.commands.candidates", "first-stage retriever: top-n candidates per query"),
    "evaluate": ("intdistill.commands.evaluate", "score a run: nDCG/R/P/RR/AP/Success from qrels, Acc@k from answers"),
    "llm": ("intdistill.commands.llm", "local LLM: serve a GGUF on loopback, assemble shipped GGUF files"),
    "generate-queries": ("intdistill.commands.generate_queries", "the LLM writes training queries from the corpus (for a corpus without queries)"),
    "label": ("intdistill.commands.label", "label candidate lists with a black-box LLM (listwise, resumable, cached)"),
    "label-report": ("intdistill.commands.label_report", "teacher quality: an LLM's (or a trained ranker's) order vs the first stage's"),
    "train-ranker": ("intdistill.commands.train_ranker", "stage 1: train the cross-encoder ranker (ListMLE) on ranked lists"),
    "train-retriever": ("intdistill.commands.train_retriever", "stage 2: distil the ranker into the bi-encoder retriever (KL)"),
    "index": ("intdistill.commands.index", "encode a corpus and build a usearch (HNSW) index; reports recall vs exact"),
    "run": ("intdistill.commands.run", "the whole pipeline from a TOML config, resumable, with a teacher gate and a report"),
    "search": ("intdistill.commands.search", "search an index with query texts, or write a TREC run for a queries file"),
    "rag": ("intdistill.commands.rag", "retrieval-augmented QA: retrieve k passages, LLM reader answers, EM / F1 (resumable)"),
    "ask": ("intdistill.commands.ask", "ask one question: the LLM reader's answer from the top-k passages, with sources"),
}


from intdistill.stages.config import Stopped  # noqa: E402  (a stop on purpose after saving the work: exit code 3)


def build_parser() -> argparse.ArgumentParser:
    from intdistill import __version__

    parser = argparse.ArgumentParser(prog="intdistill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"intdistill {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    from intdistill.data import DataError
    from intdistill.llm.errors import BudgetExceeded, CircuitOpen, LLMError

    parser = build_parser()
    args = parser.parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args._run(args) or 0)
    except DataError as e:
        print(f"intdistill {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Stopped as e:
        print(f"intdistill {args.command}: stopped: {e}", file=sys.stderr)
        return EXIT_STOPPED
    except BudgetExceeded as e:  # a command that did not turn it into Stopped: still a stop on purpose
        print(f"intdistill {args.command}: stopped: {e}; finished work is saved, rerun to go on", file=sys.stderr)
        return EXIT_STOPPED
    except LLMError as e:
        # The endpoint failed after the client's retries (or the circuit breaker stopped a run of many items:
        # named by the error that tripped it). Answers already obtained are in the LLM cache and finished
        # labels / predictions in their append-only files, so a rerun resumes; no traceback needed.
        name = type(e.last if isinstance(e, CircuitOpen) and e.last is not None else e).__name__
        print(f"intdistill {args.command}: LLM error ({name}): {e}\n"
              "  finished work is saved (labels/predictions files and the LLM cache); fix the endpoint and rerun "
              "the same command to go on", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"intdistill {args.command}: interrupted; finished work is saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"intdistill {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
