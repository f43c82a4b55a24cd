"""The worker processes that a long range's indicators and reports run in."""

import multiprocessing
import os
import signal
import sys
from concurrent.futures.process import BrokenProcessPool

import pytest

from alchemy_pipeline.domain import workers
from alchemy_pipeline.domain.workers import map_in_processes, start_workers


def _pid(item: int) -> tuple[int, int, bool]:
    return item, os.getpid(), "alchemy_pipeline.domain.report" in sys.modules


@pytest.fixture(autouse=True)
def two_workers(monkeypatch):
    monkeypatch.setattr(workers, "WORKER_PROCESSES", 2)


def _children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children()}


def test_workers_started_early_serve_the_next_map_in_order_and_stop_after_it():
    start_workers("alchemy_pipeline.domain.report")
    started = _children()
    assert started, "start_workers starts the processes at once"
    results = list(map_in_processes(_pid, range(40)))
    assert [item for item, _, _ in results] == list(range(40))
    pids = {pid for _, pid, _ in results}
    assert os.getpid() not in pids and pids <= started
    assert all(imported for _, _, imported in results)  # what start_workers imported is there
    # Done: idle workers would hold their memory through the steps in between.
    assert not _children() & pids


def test_a_dead_worker_fails_that_map_only_and_the_next_one_gets_new_workers():
    start_workers()
    victim = next(iter(_children()))
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):
        list(map_in_processes(_pid, range(10)))
    again = list(map_in_processes(_pid, range(10)))
    assert [item for item, _, _ in again] == list(range(10)) and victim not in {pid for _, pid, _ in again}
