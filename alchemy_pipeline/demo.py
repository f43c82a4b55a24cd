"""``python -m alchemy_pipeline.demo [YYYY-MM-DD]``: publishes the latest trading day already closed (or the
given day) as the schedule would, fetching first the price history it needs, and prints the report."""

import sys

from alchemy_pipeline.local_runs import main_demo

if __name__ == "__main__":
    sys.exit(main_demo())
