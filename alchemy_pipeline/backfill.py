"""``python -m alchemy_pipeline.backfill START END``: publishes every trading day of the range, fetching first
the price history its first day reads, and ends with one summary line."""

import sys

from alchemy_pipeline.local_runs import main_backfill

if __name__ == "__main__":
    sys.exit(main_backfill())
