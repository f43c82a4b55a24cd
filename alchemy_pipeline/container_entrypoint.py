"""The container's entrypoint (``deploy/Dockerfile``): brings the cached trading calendar from the data
store to this machine's ``ALCHEMY_DATA_DIR``, where the code location reads it while loading (it makes no
network call then), and runs the container's command. A cache that cannot be read stops the container,
naming the object and the fix.

    python -m alchemy_pipeline.container_entrypoint dagster api grpc ...
"""

import os
import sys

from alchemy_pipeline.defs.resources import build_resources
from alchemy_pipeline.domain.market.calendar import CalendarError
from alchemy_pipeline.settings import SettingsError, load_settings


def main(command: list[str]) -> int:
    if not command:
        print("container_entrypoint: no command to run after bringing the trading calendar", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
        known = build_resources(settings)["calendar_cache"].copy_to(str(settings.data_dir))
    except (SettingsError, CalendarError) as exc:
        print(f"container_entrypoint: {exc}", file=sys.stderr)
        return 1
    print(f"container_entrypoint: trading calendar known to {known.known_until} ({known.source})", file=sys.stderr)
    os.execvp(command[0], command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
