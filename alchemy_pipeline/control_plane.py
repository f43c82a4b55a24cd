"""The small profile's control plane, one task that sleeps between days (``deploy/README.md``):

    python -m alchemy_pipeline.container_entrypoint python -m alchemy_pipeline.control_plane

It starts Dagster's daemon (``dagster-daemon run``; its workspace loads the code location in this task),
reads from Dagster's storage every ``--poll-seconds`` what the daemon has done, and once
``domain.control_plane.decide`` says the day's work is done, or at the ceiling, stops the daemon and exits
0, which ends the task. SIGTERM (a Spot interruption, ``aws ecs stop-task``) stops the daemon as well: the
next start catches up what was missed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg

from alchemy_pipeline.control_plane_watch import ScheduleClock, take_watch
from alchemy_pipeline.domain.control_plane import Limits, ceiling_after_late_data, decide
from alchemy_pipeline.settings import SettingsError, load_settings

# The daemon gets this long to finish its threads' iterations after SIGINT before it is killed.
DAEMON_STOP_SECONDS = 60


def _log(message: str) -> None:
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} control_plane: {message}", file=sys.stderr, flush=True)


def _stop(daemon: subprocess.Popen) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGINT)
        try:
            daemon.wait(timeout=DAEMON_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m alchemy_pipeline.control_plane", description=__doc__.split("\n")[0]
    )
    defaults = Limits()
    parser.add_argument(
        "--workspace", default="/opt/dagster/home/workspace-small.yaml", help="the daemon's workspace (the image's)"
    )
    parser.add_argument("--poll-seconds", type=float, default=30, help="how often Dagster's storage is read")
    parser.add_argument("--settle-seconds", type=float, default=defaults.settle.total_seconds())
    parser.add_argument("--lead-minutes", type=float, default=defaults.lead.total_seconds() / 60)
    parser.add_argument(
        "--ceiling-minutes", type=float, help="default: the late-data retries' span (ALCHEMY_LATE_DATA_*) plus an hour"
    )
    parser.add_argument("--stay-minutes", type=float, default=0, help="stay at least this long (deploy/ui up)")
    args = parser.parse_args(argv)
    for name in ("poll_seconds", "settle_seconds", "lead_minutes", "ceiling_minutes", "stay_minutes"):
        value = getattr(args, name)
        if name == "poll_seconds" and value <= 0:
            parser.error(f"--poll-seconds={value:g} must be more than 0")
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')}={value:g} must not be negative")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings()
        # Imported here: importing the code location loads it, which needs the settings checked first.
        from alchemy_pipeline.definitions import build_definitions
    except SettingsError as exc:
        _log(str(exc))
        return 1
    ceiling = ceiling_after_late_data(settings.late_data_retries, settings.late_data_retry_seconds)
    limits = Limits(
        settle=dt.timedelta(seconds=args.settle_seconds),
        lead=dt.timedelta(minutes=args.lead_minutes),
        ceiling=ceiling if args.ceiling_minutes is None else dt.timedelta(minutes=args.ceiling_minutes),
        stay=dt.timedelta(minutes=args.stay_minutes),
    )
    clocks = [ScheduleClock.of(s) for s in build_definitions(settings).schedules or []]
    started_at = dt.datetime.now(dt.UTC)
    daemon = subprocess.Popen([str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", args.workspace])
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    _log(f"daemon started (pid {daemon.pid}); ceiling {limits.ceiling.total_seconds() / 60:g} min")
    said = None
    try:
        with dg.DagsterInstance.get() as instance:
            while not stopping.wait(args.poll_seconds):
                if daemon.poll() is not None:
                    _log(f"the daemon exited by itself with code {daemon.returncode}")
                    return 1
                try:
                    watch = take_watch(instance, clocks, started_at, dt.datetime.now(dt.UTC), limits.lead)
                except Exception as exc:  # a database that is resuming answers late: ask again next time
                    _log(f"could not read Dagster's storage ({type(exc).__name__}: {exc}); trying again")
                    continue
                decision = decide(watch, limits)
                if decision.reason != said:
                    _log(("leaving: " if decision.leave else "staying: ") + decision.reason)
                    said = decision.reason
                if decision.leave:
                    break
            else:
                _log("SIGTERM: stopping the daemon; the next start catches up")
    finally:
        _stop(daemon)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
