"""The worker processes that a long range's indicators and reports run in."""

import os
import signal
from concurrent.futures.process import BrokenProcessPool

import pytest

from alchemy_pipeline.domain import workers
from alchemy_pipeline.domain.workers import map_in_processes, start_workers


def _pid(item: int) -> tuple[int, int]:
    return item, os.getpid()


def _pid_after_import(item: int) -> tuple[int, bool]:
    import sys

    return os.getpid(), "alchemy_pipeline.domain.report" in sys.modules


@pytest.fixture
def two_workers(monkeypatch):
    monkeypatch.setattr(workers, "WORKER_PROCESSES", 2)
    workers._discard_pool()
    yield
    workers._discard_pool()


def test_steps_share_the_workers_started_early_and_results_keep_their_order(two_workers):
    start_workers("alchemy_pipeline.domain.report")
    first = list(map_in_processes(_pid, range(40)))
    assert [item for item, _ in first] == list(range(40))
    pids = {pid for _, pid in first}
    assert os.getpid() not in pids and len(pids) <= 2
    # A later step (the reports after the indicators) finds the same processes, with what they imported.
    later = list(map_in_processes(_pid_after_import, range(10)))
    assert {pid for pid, _ in later} <= pids and all(imported for _, imported in later)


def test_a_dead_worker_fails_that_step_only_and_the_next_one_gets_new_workers(two_workers):
    pids = {pid for _, pid in map_in_processes(_pid, range(10))}
    os.kill(next(iter(pids)), signal.SIGKILL)
    with pytest.raises(BrokenProcessPool):
        list(map_in_processes(_pid, range(10)))
    again = list(map_in_processes(_pid, range(10)))
    assert [item for item, _ in again] == list(range(10)) and not {pid for _, pid in again} & pids
