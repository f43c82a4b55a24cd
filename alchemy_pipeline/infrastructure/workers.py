"""Pure-Python work spread over worker processes, for ranges large enough to repay starting them.

Each ``map_in_processes`` has its own workers and stops them when it is done: idle, each still holds its
imports and what its allocator kept, and the steps in between need that memory.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# At most 4: a container may see more cores than it is granted.
WORKER_PROCESSES = min(4, len(os.sched_getaffinity(0)))
# Below this many rows, starting the workers (each imports pandas and TA-Lib) costs more than it saves.
MIN_ROWS_FOR_WORKERS = 250_000


def worth_workers(rows: int) -> bool:
    return WORKER_PROCESSES > 1 and rows >= MIN_ROWS_FOR_WORKERS


def _new_pool() -> ProcessPoolExecutor:
    # spawn, not fork: the pipeline's process runs threads (Dagster's, the blob writers'), and a forked
    # child could inherit a lock that one of them held.
    return ProcessPoolExecutor(max_workers=WORKER_PROCESSES, mp_context=multiprocessing.get_context("spawn"))


def in_order(pool: Executor, work: Callable[..., R], items: Iterable[T], ahead: int, *args) -> Iterator[R]:
    """``work(item, *args)`` for each item in ``pool``, results in the items' order; at most ``ahead`` items
    are handed out beyond the results taken, so that a long range is never all in flight nor all held."""
    pending: deque = deque()
    try:
        for item in items:
            pending.append(pool.submit(work, item, *args))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # stopped early (an error, or the caller gave up): no work left behind
            future.cancel()


def map_in_processes(work: Callable[..., R], items: Iterable[T], *args) -> Iterator[R]:
    """``work(item, *args)`` for each item in worker processes (``in_order``)."""
    with _new_pool() as pool:
        yield from in_order(pool, work, items, 2 * WORKER_PROCESSES, *args)
