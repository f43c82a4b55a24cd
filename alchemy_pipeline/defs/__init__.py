"""Dagster glue around the domain logic: partitions, IO, resources, assets, jobs, schedule, sensor."""

import warnings

import dagster as dg

# Single-run backfill policies and lookback mappings on missing history are marked beta; they are the
# designed behaviour here, so their warnings would only be noise in every run's logs.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
