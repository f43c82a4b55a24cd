"""The parameter lab's asset: the backtest of every pair of average lengths on a grid, in and out of sample.

An analyst's asset: not in the daily job, materialized from the UI's launchpad or the CLI with its grid
and period as run config (``domain/lab/`` does the work; docs/lab.md)."""

import dataclasses
import datetime as dt

import dagster as dg
from pydantic import Field

from alchemy_pipeline.defs.backtest.assets import GROUP
from alchemy_pipeline.defs.io_manager import MissingPartitionsError, PartitionedParquetIOManager
from alchemy_pipeline.defs.partitions import FIRST_DAY, PRICE_ASSET
from alchemy_pipeline.defs.resources import BacktestResource, SiteResource, StrategyResource, UniverseResource
from alchemy_pipeline.defs.trading_days import TRADING_DAYS
from alchemy_pipeline.domain import lab
from alchemy_pipeline.domain.backtest import PORTFOLIO
from alchemy_pipeline.domain.site.charts import heatmap_png, markdown_image
from alchemy_pipeline.domain.site.publish import LAB_LATEST, publish_sweep, published_days

SWEEP_ASSET = "ma_sweep"
PRICE_COLUMNS = ["ts_code", "trade_date", "open", "close", "adj_factor"]
TOP_PAIRS = 10


class SweepConfig(dg.Config):
    """The grid (every short < long of the two ranges) and the period; each has its default."""

    short_from: int = Field(lab.Grid.short_from, description="shortest short average, trading days")
    short_to: int = Field(lab.Grid.short_to, description="longest short average")
    long_from: int = Field(lab.Grid.long_from, description="shortest long average")
    long_to: int = Field(lab.Grid.long_to, description="longest long average")
    step: int = Field(lab.Grid.step, description="step of both ranges")
    start: str | None = Field(None, description="first day, YYYY-MM-DD; default ALCHEMY_BACKTEST_START")
    end: str | None = Field(None, description="last day, YYYY-MM-DD; default the latest published day")
    in_sample: float = Field(lab.DEFAULT_IN_SAMPLE, description="share of the period's trading days in sample")
    folds: int = Field(lab.DEFAULT_FOLDS, description="folds of the anchored walk-forward")

    def grid(self) -> lab.Grid:
        return lab.Grid(self.short_from, self.short_to, self.long_from, self.long_to, self.step)


def _day(name: str, text: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise lab.GridError(f"{name}={text!r} is not a date: give it as YYYY-MM-DD") from None
    if day < FIRST_DAY:
        raise lab.GridError(f"{name}={text} is before {FIRST_DAY}, the first day Alchemy covers")
    if not TRADING_DAYS.calendar.is_trading_day(day):
        raise lab.GridError(f"{name}={text}: {TRADING_DAYS.calendar.why_closed(day)}")
    return day


def _standing_metadata(standing: dict) -> dict:
    production, best, robust = standing["production"], standing["best_in_sample"], standing["robustness"]
    metadata = {}
    if production is not None:
        metadata.update(
            production_in_sample_rank=production["in_sample_rank"],
            production_out_of_sample_rank=production["out_of_sample_rank"],
            production_out_of_sample_sharpe=production["out_of_sample_sharpe"],
        )
    if best is not None:
        metadata.update(
            best_in_sample_pair=f"{best['short']}/{best['long']}",
            best_in_sample_out_of_sample_rank=best["out_of_sample_rank"],
            best_in_sample_held_up=best["held_up"],
        )
    if robust is not None:
        metadata["robustness"] = robust["share"]
    return {k: v for k, v in metadata.items() if v is not None}


def _walk_forward_metadata(walk: dict) -> dict:
    """The portfolio's walk-forward: the mean (and sample standard deviation) of the out-of-sample Sharpe
    ratio of each fold's chosen pair and of the production pair."""
    metadata = {}
    for who in ("chosen", "production"):
        for stat in ("mean", "sd"):
            if walk[who][stat] is not None:
                metadata[f"walk_forward_{who}_sharpe_{stat}"] = walk[who][stat]
    return metadata


def build_sweep_asset(backtest_start: dt.date) -> dg.AssetsDefinition:
    """The ``ma_sweep`` asset; its period starts on ``backtest_start`` (ALCHEMY_BACKTEST_START) unless its
    run config says otherwise."""

    @dg.asset(
        name=SWEEP_ASSET,
        group_name=GROUP,
        kinds={"pandas", "parquet", "json"},
        deps=[PRICE_ASSET],
        description=(
            "The parameter lab: the backtest (same rule, costs and fills as etf_backtest) of every pair of "
            "moving-average lengths on a grid (default short 3..30, long 10..120, short < long: 2,877 pairs), "
            "for every fund and the equal-weight portfolio, over the whole period, its first 70% of trading days "
            "(in sample) and the rest (out of sample, from fresh cash). Where the production pair ranks, whether "
            "the best in-sample pair held up, and how many of the production pair's neighbours do as well; an "
            "anchored walk-forward over 5 folds (run config): each fold's best in-sample pair and the production "
            "pair scored on the next stretch. "
            f"Publishes lab/<run id>/ and {LAB_LATEST}/ (sweep.parquet, sweep.json, a heatmap page). Reads the "
            "stored prices only. Not in the daily job: materialize it with a grid and period as run config."
        ),
    )
    def ma_sweep(
        context: dg.AssetExecutionContext,
        config: SweepConfig,
        io_manager: dg.ResourceParam[PartitionedParquetIOManager],
        universe: UniverseResource,
        strategy: StrategyResource,
        backtest: BacktestResource,
        site: SiteResource,
    ) -> dg.MaterializeResult:
        store = site.store()
        try:
            # Everything the config says is checked before anything is read.
            grid = config.grid()
            lab.check_in_sample(config.in_sample)
            lab.check_folds(config.folds)
            start = _day("start", config.start) if config.start else backtest_start
            if config.end:
                end = _day("end", config.end)
            elif published := published_days(store):
                end = dt.date.fromisoformat(published[-1])
            else:
                raise lab.GridError("no day is published yet: give the period's end as end=YYYY-MM-DD")
            if end <= start:
                raise lab.GridError(f"the period ends on {end}, not after it starts on {start}")
            # The prices from far enough back for the longest average to cross on the first day, to the end.
            sessions = TRADING_DAYS.calendar.sessions(FIRST_DAY, end)
            first = max(0, sessions.index(start) - grid.longest())
            keys = [d.isoformat() for d in sessions[first:]]
            prices = io_manager.read(dg.AssetKey(PRICE_ASSET), keys, PRICE_COLUMNS)
            context.log.info(f"{PRICE_ASSET}: {len(keys)} partitions read, {len(prices)} rows")
            params = strategy.params()
            sweep = lab.run_sweep(
                prices,
                universe.load(),
                grid,
                dataclasses.replace(backtest.settings(), start=start),
                end,
                config.in_sample,
                (params.short, params.long),
                config.folds,
            )
        except (lab.GridError, MissingPartitionsError) as error:
            raise dg.Failure(description=str(error), allow_retries=False) from None
        written = publish_sweep(store, sweep, context.run.run_id)
        context.log.info(f"{len(written)} files published under lab/{context.run.run_id}/ and {LAB_LATEST}/")
        summary = lab.headline(sweep)
        rows = sweep.rows(PORTFOLIO)
        png = heatmap_png(
            rows["short"].to_numpy(),
            rows["long"].to_numpy(),
            rows["out_of_sample_sharpe"].to_numpy(),
            "Portfolio: out-of-sample Sharpe",
            sweep.production,
        )
        top = rows.nlargest(TOP_PAIRS, "out_of_sample_sharpe")[
            ["short", "long", "in_sample_sharpe", "out_of_sample_sharpe", "out_of_sample_cagr", "full_max_drawdown"]
        ]
        period = sweep.period
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": len(sweep.table),
                "heatmap": dg.MetadataValue.md(markdown_image(png, "out-of-sample Sharpe heatmap", "image/png")),
                "period": f"{period.start}...{period.end}",
                "split_day": period.split_day.isoformat(),
                "pairs": len(grid.pairs()),
                "funds": int(sweep.table["ts_code"].nunique()) - 1,
                **_standing_metadata(summary["portfolio"]),
                **_walk_forward_metadata(sweep.walk_forward[PORTFOLIO]),
                "top_pairs_out_of_sample": dg.MetadataValue.md(top.to_markdown(index=False, floatfmt=".4f")),
                "page": dg.MetadataValue.url(site.url(f"lab/{context.run.run_id}/index.html")),
            }
        )

    return ma_sweep
