"""Pure-Python work spread over worker processes, for ranges large enough to repay starting them.

Each ``map_in_processes`` has its own workers and stops them when it is done: idle, each still holds its
imports and what its allocator kept, and the steps in between need that memory. A run can start the workers
of its next ``map_in_processes`` early (``start_workers``), while it waits on something else, so that the
step does not wait for them to start and import.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# At most 4: a container may see more cores than it is granted.
WORKER_PROCESSES = min(4, len(os.sched_getaffinity(0)))
# Below this many rows, starting the workers (each imports pandas and TA-Lib) costs more than it saves.
MIN_ROWS_FOR_WORKERS = 250_000

_started: ProcessPoolExecutor | None = None  # workers started ahead, for the next map_in_processes
_started_lock = threading.Lock()


def worth_workers(rows: int) -> bool:
    return WORKER_PROCESSES > 1 and rows >= MIN_ROWS_FOR_WORKERS


def _new_pool() -> ProcessPoolExecutor:
    # spawn, not fork: the pipeline's process runs threads (Dagster's, the blob writers'), and a forked
    # child could inherit a lock that one of them held.
    return ProcessPoolExecutor(max_workers=WORKER_PROCESSES, mp_context=multiprocessing.get_context("spawn"))


def _import(modules: tuple[str, ...]) -> None:
    for module in modules:
        importlib.import_module(module)


def start_workers(*modules: str) -> None:
    """Starts the workers of the next ``map_in_processes``, each importing ``modules``, without waiting."""
    global _started
    with _started_lock:
        if _started is not None:
            return
        _started = pool = _new_pool()
    for _ in range(WORKER_PROCESSES):
        pool.submit(_import, modules)


def map_in_processes(work: Callable[..., R], items: Iterable[T], *args) -> Iterator[R]:
    """``work(item, *args)`` for each item in worker processes, results in the items' order; only a few
    items are handed out ahead of the results taken, so that a long range is never all in flight."""
    global _started
    with _started_lock:
        pool, _started = _started or _new_pool(), None
    with pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(work, item, *args))
                if len(pending) > 2 * WORKER_PROCESSES:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:  # stopped early (an error, or the caller gave up): no work left behind
                future.cancel()
