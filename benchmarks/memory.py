"""The peak memory of a process tree, sampled from /proc while a scenario runs."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path


def _command_line(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


class TreePeak:
    """The highest total resident memory of a process and its descendants, sampled every 0.2 s (a step's
    worker processes count with the process that started them)."""

    def __init__(self, pid: int):
        self.pid, self.mb = pid, 0
        self.samples: list[tuple[float, int]] = []  # (Unix time, MB) of every sample
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
            total_kb = 0
            for pid in self._tree(self.pid):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    total_kb += int(status.split("VmRSS:")[1].split()[0])
                except (OSError, IndexError):
                    pass  # gone, or a zombie without memory
            self.mb = max(self.mb, round(total_kb / 1024))
            self.samples.append((time.time(), round(total_kb / 1024)))

    def peak_between(self, start: float, end: float) -> int:
        """The highest total sampled from ``start`` to ``end`` (Unix times)."""
        return max((mb for at, mb in self.samples if start <= at <= end), default=0)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
