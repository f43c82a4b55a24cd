"""The parameter lab: every pair of average lengths on a grid (``grid``), simulated a fund at a time
(``simulation``), swept in and out of sample and walked forward (``sweep``, ``walk_forward``) and described
as JSON (``documents``); its page is the site's (``site.lab_page``). The names other packages use are
gathered here."""

from alchemy_pipeline.domain.lab.documents import headline, standing, sweep_document
from alchemy_pipeline.domain.lab.grid import DEFAULT_IN_SAMPLE, Grid, GridError, check_in_sample
from alchemy_pipeline.domain.lab.simulation import PAIR_METRICS, fund_histories, pair_signals, simulate_pairs
from alchemy_pipeline.domain.lab.sweep import Sweep, run_sweep
from alchemy_pipeline.domain.lab.walk_forward import DEFAULT_FOLDS, check_folds

__all__ = [
    "DEFAULT_FOLDS",
    "DEFAULT_IN_SAMPLE",
    "PAIR_METRICS",
    "Grid",
    "GridError",
    "Sweep",
    "check_folds",
    "check_in_sample",
    "fund_histories",
    "headline",
    "pair_signals",
    "run_sweep",
    "simulate_pairs",
    "standing",
    "sweep_document",
]
