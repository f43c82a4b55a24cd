"""Pure-Python work spread over worker processes, for ranges large enough to repay starting them.

The processes are started once per process and kept: a run's indicators and reports share them, and a run
can start them early (``start_workers``), while it waits on something else, so that no step waits for them to
start and import.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# At most 4: a container may see more cores than it is granted.
WORKER_PROCESSES = min(4, len(os.sched_getaffinity(0)))
# Below this many rows, starting the workers (each imports pandas and TA-Lib) costs more than it saves.
MIN_ROWS_FOR_WORKERS = 250_000

_pools: dict[int, ProcessPoolExecutor] = {}
_pools_lock = threading.Lock()


def worth_workers(rows: int) -> bool:
    return WORKER_PROCESSES > 1 and rows >= MIN_ROWS_FOR_WORKERS


def _pool() -> ProcessPoolExecutor:
    """This process's pool of ``WORKER_PROCESSES`` workers, started on first use."""
    with _pools_lock:
        if WORKER_PROCESSES not in _pools:
            # spawn, not fork: the pipeline's process runs threads (Dagster's, the blob writers'), and a forked
            # child could inherit a lock that one of them held.
            _pools[WORKER_PROCESSES] = ProcessPoolExecutor(
                max_workers=WORKER_PROCESSES, mp_context=multiprocessing.get_context("spawn")
            )
        return _pools[WORKER_PROCESSES]


def _discard_pool() -> None:
    with _pools_lock:
        _pools.pop(WORKER_PROCESSES, None)


def _import(modules: tuple[str, ...]) -> None:
    for module in modules:
        importlib.import_module(module)


def start_workers(*modules: str) -> None:
    """Starts the worker processes, each importing ``modules``, without waiting for them."""
    pool = _pool()
    for _ in range(WORKER_PROCESSES):
        pool.submit(_import, modules)


def map_in_processes(work: Callable[..., R], items: Iterable[T], *args) -> Iterator[R]:
    """``work(item, *args)`` for each item in worker processes, results in the items' order; only a few
    items are handed out ahead of the results taken, so that a long range is never all in flight."""
    pool = _pool()
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item, *args))
            if len(pending) > 2 * WORKER_PROCESSES:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool:
        _discard_pool()  # a worker died (out of memory, killed): the next use starts new ones
        raise
    finally:
        for future in pending:  # stopped early (an error, or the caller gave up): no work left behind
            future.cancel()
