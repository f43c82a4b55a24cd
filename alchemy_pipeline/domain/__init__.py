"""Plain-Python domain logic: no Dagster imports here, so it can be tested and reused directly."""
