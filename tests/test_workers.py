"""The worker processes that a long range's indicators and reports run in."""

import multiprocessing
import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest

from alchemy_pipeline.infrastructure import workers
from alchemy_pipeline.infrastructure.storage import IN_FLIGHT, one_by_one
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


def test_a_ranges_objects_are_read_a_few_ahead_of_the_one_parsed_in_order():
    """The IO manager parses a range's objects as they come: a decade of states is a gigabyte of files, and
    reading every one before parsing the first held them all at once."""
    fetched = []

    def fetch(key: int) -> int:
        fetched.append(key)
        return key * 10

    results = one_by_one(fetch, range(1_000))
    assert next(results) == 0
    assert len(fetched) <= 2 * IN_FLIGHT + 1
    assert [0, *results] == [k * 10 for k in range(1_000)]
