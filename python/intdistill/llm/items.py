"""Many independent LLM items (a query to label, a question to answer, a passage to write a query about),
each finished or failed on its own, as batch systems do (the OpenAI Batch API, Ray's task retries).

:func:`run_items` runs ``work(item)`` for every item, ``concurrency`` at a time, in threads:

- an item whose ``work`` returns is handed to ``on_done`` (in the calling thread, as it completes, whatever
  the input order), and the progress bar moves at once;
- an item whose ``work`` raises an :class:`~intdistill.llm.errors.LLMError` (its calls failed after every
  retry the client makes) is handed to ``on_fail`` and the run goes on with the others;
- the circuit breaker: an error no retry can fix (authentication, an unknown model (HTTP 404), nothing
  listening at the URL), or ``max_consecutive_failures`` failed items in a row, stops the run early: no new
  item starts, those in flight finish and are handed over, then :class:`CircuitOpen` is raised with a
  one-line message;
- a budget stop (``BudgetExceeded``) stops the same way and is re-raised; that item is not a failure;
- Ctrl-C: no new item starts, the calls in flight finish (their answers reach the LLM cache), then
  ``KeyboardInterrupt`` propagates. Any other exception (a bug) also stops the run and propagates.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from intdistill.llm.errors import BudgetExceeded, CircuitOpen, LLMAuthError, LLMError, LLMRequestError, LLMUnreachable

T = TypeVar("T")
#: Failed items in a row that stop a run (the circuit breaker), unless the command's option says otherwise.
DEFAULT_MAX_CONSECUTIVE_FAILURES = 5


@dataclass(frozen=True)
class ItemsRun:
    """What :func:`run_items` did."""

    done: int  # items finished (handed to on_done)
    failed: tuple[str, ...]  # ids of the items that failed, in completion order


def is_fatal(err: LLMError) -> bool:
    """An error that no retry and no other item will fix: the endpoint is down for everyone."""
    return isinstance(err, (LLMAuthError, LLMUnreachable)) or (isinstance(err, LLMRequestError) and err.status == 404)


def run_items(
    items: Iterable[T],
    work: Callable[[T], Any],
    on_done: Callable[[T, Any], None],
    *,
    on_fail: Callable[[T, LLMError], None],
    item_id: Callable[[T], str] = str,
    concurrency: int = 1,
    max_consecutive_failures: int | None = DEFAULT_MAX_CONSECUTIVE_FAILURES,
    client=None,
    progress: bool = True,
    desc: str = "LLM",
    total: int | None = None,
    initial: int = 0,
    size: Callable[[T], int] | None = None,
) -> ItemsRun:
    """Run ``work`` over ``items`` with the rules of the module docstring. ``client``: an ``LLMClient`` whose
    ledger the progress bar shows (retries, malformed answers); ``total`` / ``initial``: the bar's size and
    its start (items done before); ``size(item)``: how far an item moves the bar (default 1).
    ``max_consecutive_failures``: None or 0 turns the count off (fatal errors still stop the run)."""
    import time

    from tqdm.auto import tqdm

    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency: expected an int >= 1, got {concurrency!r}")
    if max_consecutive_failures is not None and (isinstance(max_consecutive_failures, bool)
                                                 or not isinstance(max_consecutive_failures, int)
                                                 or max_consecutive_failures < 0):
        raise ValueError(f"max_consecutive_failures: expected None or an int >= 0, got {max_consecutive_failures!r}")
    items = list(items)
    bar = tqdm(total=initial + len(items) if total is None else total, initial=initial, desc=desc, unit="item",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)
    todo = iter(items)
    in_flight: dict = {}
    failed: list[str] = []
    n_done = 0
    in_a_row = 0
    stop: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="llm-item")
    start = time.perf_counter()
    tokens0 = client.ledger.completion_tokens if client is not None else 0
    try:
        while True:
            while stop is None and len(in_flight) < concurrency:
                item = next(todo, None)
                if item is None:
                    break
                in_flight[pool.submit(work, item)] = item
            if not in_flight:
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in finished:
                item = in_flight.pop(fut)
                try:
                    result = fut.result()
                except BudgetExceeded as e:
                    stop = stop or e
                    continue
                except LLMError as e:
                    failed.append(item_id(item))
                    on_fail(item, e)
                    in_a_row += 1
                    if stop is None and is_fatal(e):
                        stop = CircuitOpen(f"stopped early: {e}", last=e, base_url=e.base_url, model=e.model,
                                           status=e.status)
                    elif stop is None and max_consecutive_failures and in_a_row >= max_consecutive_failures:
                        stop = CircuitOpen(f"stopped early: {in_a_row} items failed in a row (the endpoint looks "
                                           f"down; the last error: {type(e).__name__}: {e})", last=e,
                                           base_url=e.base_url, model=e.model, status=e.status)
                except BaseException as e:  # a bug or Ctrl-C inside work: stop, then re-raise
                    stop = stop or e
                    continue
                else:
                    in_a_row = 0
                    n_done += 1
                    on_done(item, result)
                bar.update(size(item) if size is not None else 1)
                post = {"failed": len(failed)}
                if client is not None:
                    led = client.ledger
                    tok_s = (led.completion_tokens - tokens0) / max(time.perf_counter() - start, 1e-9)
                    post.update(retries=led.retries, malformed=led.malformed, tok_s=f"{tok_s:.1f}")
                bar.set_postfix(post, refresh=False)
    except BaseException as e:  # Ctrl-C in this thread: let the calls in flight finish (they reach the cache)
        stop = stop or e
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    if stop is not None:
        raise stop
    return ItemsRun(n_done, tuple(failed))
