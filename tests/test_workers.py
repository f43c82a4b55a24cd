"""The worker processes that a long range's indicators and reports run in."""

import multiprocessing
import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest

from alchemy_pipeline.infrastructure import workers
from alchemy_pipeline.infrastructure.workers import map_in_processes


def _pid(item: int) -> tuple[int, int]:
    return item, os.getpid()


def _kill_myself_on(item: int, victim: int) -> int:
    if item == victim:
        os.kill(os.getpid(), signal.SIGKILL)
    return item


@pytest.fixture(autouse=True)
def two_workers(monkeypatch):
    monkeypatch.setattr(workers, "WORKER_PROCESSES", 2)


def _children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children()}


def test_each_map_runs_in_its_own_workers_in_order_and_stops_them_after():
    results = list(map_in_processes(_pid, range(40)))
    assert [item for item, _ in results] == list(range(40))
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    # Done: idle workers would hold their memory through the steps in between.
    assert not _children() & pids


def test_a_dead_worker_fails_that_map_only_and_the_next_one_gets_new_workers():
    with pytest.raises(BrokenProcessPool):
        list(map_in_processes(_kill_myself_on, range(10), 3))
    again = list(map_in_processes(_pid, range(10)))
    assert [item for item, _ in again] == list(range(10))
