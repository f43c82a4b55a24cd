"""The peak memory and the CPU time of a process tree, sampled from /proc while a scenario runs."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (which may hold spaces), from the state on."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _command_line(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


class ProcessTreeSampler:
    """The highest total resident memory of a process and its descendants, sampled every 0.2 s (a step's
    worker processes count with the process that started them), and their CPU time so far at each sample."""

    def __init__(self, pid: int):
        self.pid, self.mb = pid, 0
        self.samples: list[tuple[float, int]] = []  # (Unix time, MB) of every sample
        self.cpu_samples: list[tuple[float, float]] = []  # (Unix time, CPU seconds so far) of every sample
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _tree(self, pid: int) -> list[int]:
        children = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                children += [int(c) for c in (task / "children").read_text().split()]
        # A child that has not exec'd yet (Dagster starts a log tailer per run) still runs in its parent's
        # memory and would count it twice: it still has its parent's command line.
        started = [c for c in children if _command_line(c) != _command_line(pid)]
        return [pid, *(p for child in started for p in self._tree(child))]

    def _sample(self) -> None:
        while not self._done.wait(0.2):
            total_kb, ticks = 0, 0
            for pid in self._tree(self.pid):
                try:
                    # utime, stime, cutime, cstime: a process's own CPU and its waited-for children's, so
                    # that the CPU of a worker that has exited stays counted in its parent's.
                    ticks += sum(int(f) for f in _stat_fields(pid)[11:15])
                    status = Path(f"/proc/{pid}/status").read_text()
                    total_kb += int(status.split("VmRSS:")[1].split()[0])
                except (OSError, IndexError):
                    pass  # gone, or a zombie without memory
            now = time.time()
            self.mb = max(self.mb, round(total_kb / 1024))
            self.samples.append((now, round(total_kb / 1024)))
            self.cpu_samples.append((now, ticks / CLOCK_TICKS))

    def peak_between(self, start: float, end: float) -> int:
        """The highest total sampled from ``start`` to ``end`` (Unix times)."""
        return max((mb for at, mb in self.samples if start <= at <= end), default=0)

    def cpu_between(self, start: float, end: float) -> float:
        """CPU seconds the tree used from ``start`` to ``end`` (Unix times), to the nearest samples: a step
        that kept both cores busy used twice its wall time."""

        def at(when: float) -> float:
            return max((cpu for t, cpu in self.cpu_samples if t <= when), default=0.0)

        return round(at(end) - at(start), 1)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
