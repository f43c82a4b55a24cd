"""Settings and the universe file: bad input fails at once, naming the problem."""

import dataclasses

import pytest

from alchemy_pipeline.domain.market.universe import UniverseError, load_universe
from alchemy_pipeline.settings import Settings, SettingsError, load_settings, path, text, variables
from tests.conftest import REPO_ROOT


def test_defaults_run_locally_on_demo_data_without_a_token():
    settings = load_settings({})
    assert (settings.env, settings.price_source) == ("local", "demo")
    assert settings.notify_max_age_days == 3
    assert (settings.ma_short, settings.ma_long) == (11, 22)


def test_a_token_selects_tushare_and_the_seed_name_is_accepted():
    assert load_settings({"TUSHARE_TOKEN": "t"}).tushare_token_var == "TUSHARE_TOKEN"
    seed = load_settings({"TUSHARE_API_TOKEN": "t"})
    assert (seed.price_source, seed.tushare_token_var) == ("tushare", "TUSHARE_API_TOKEN")


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"ALCHEMY_ENV": "staging"}, "ALCHEMY_ENV"),
        ({"ALCHEMY_PRICE_SOURCE": "yahoo"}, "ALCHEMY_PRICE_SOURCE"),
        ({"ALCHEMY_PRICE_SOURCE": "tushare"}, "TUSHARE_TOKEN"),
        ({"ALCHEMY_NOTIFY_MAX_AGE_DAYS": "three"}, "ALCHEMY_NOTIFY_MAX_AGE_DAYS"),
        ({"TUSHARE_TIMEOUT": "0"}, "TUSHARE_TIMEOUT"),
        ({"TUSHARE_CALLS_PER_MINUTE": "0"}, "TUSHARE_CALLS_PER_MINUTE"),
        ({"ALCHEMY_MAX_FUNDS_WITHOUT_DATA": "-1"}, "ALCHEMY_MAX_FUNDS_WITHOUT_DATA"),
        ({"ALCHEMY_MA_LONG": "60"}, "ALCHEMY_MA_LONG=60 is longer than 49 trading days"),
        ({"ALCHEMY_MA_SHORT": "30"}, "ALCHEMY_MA_SHORT=30 and ALCHEMY_MA_LONG=22"),
        ({"ALCHEMY_BACKTEST_START": "2014-12-31"}, "ALCHEMY_BACKTEST_START='2014-12-31' is before 2015-01-05"),
        ({"ALCHEMY_BACKTEST_START": "2015-13-01"}, "ALCHEMY_BACKTEST_START='2015-13-01' is not a date"),
        ({"ALCHEMY_BACKTEST_EXECUTION": "open"}, "ALCHEMY_BACKTEST_EXECUTION='open' is not supported"),
        ({"ALCHEMY_BACKTEST_COMMISSION": "1.5"}, "ALCHEMY_BACKTEST_COMMISSION='1.5' must be at least 0 and below 1"),
        ({"ALCHEMY_BACKTEST_SLIPPAGE_BPS": "-2"}, "ALCHEMY_BACKTEST_SLIPPAGE_BPS='-2' must be at least 0"),
        ({"ALCHEMY_BACKTEST_LOT": "0"}, "ALCHEMY_BACKTEST_LOT='0' must be at least 1"),
        ({"ALCHEMY_BACKTEST_CASH": "lots"}, "ALCHEMY_BACKTEST_CASH='lots' is not a number"),
    ],
)
def test_bad_settings_name_the_variable(environ, named):
    with pytest.raises(SettingsError, match=named):
        load_settings(environ)


def test_default_universe_is_the_projects_list_of_liquid_etfs():
    universe = load_universe()
    assert 35 <= len(universe) <= 50
    assert {"510300.SH", "510500.SH", "159915.SZ", "512880.SH", "513500.SH"} <= set(universe["ts_code"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("code,name\n510300.SH,x\n", "lacks the column"),
        ("ts_code,name\n510300,x\n", "malformed ts_code"),
        ("ts_code,name\n510300.SH,a\n510300.SH,b\n", "more than once"),
        ("ts_code,name\n", "no fund"),
    ],
)
def test_bad_universe_files_are_refused_with_the_reason(tmp_path, content, message):
    path = tmp_path / "universe.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UniverseError, match=message):
        load_universe(path)


def configuration_tables() -> list[str]:
    """The two configuration tables of docs/configuration.md, as the settings declare them."""

    def default(field: str, variable) -> str:
        value = next(f.default for f in dataclasses.fields(Settings) if f.name == field)
        if variable.shown_default:
            return variable.shown_default
        return "none" if value is None else f"`{value:g}`" if isinstance(value, float) else f"`{value}`"

    local = [f"| `{v.name}` | {default(field, v)} | {v.meaning} |" for field, v in variables() if v.meaning]
    aws = [f"| `{v.name}` | {v.aws_meaning or v.meaning} |" for _, v in variables() if v.aws_need]
    return [
        "\n".join(["| variable | default | meaning |", "|---|---|---|", *local]),
        "\n".join(["| variable | meaning |", "|---|---|", *aws]),
    ]


def test_the_documented_configuration_tables_are_the_settings_declarations():
    page = (REPO_ROOT / "docs" / "configuration.md").read_text("utf-8")
    for table in configuration_tables():
        assert table in page, f"docs/configuration.md's configuration table should read:\n{table}"


def test_every_declared_variable_is_read_and_checked():
    for _, variable in variables():
        if variable.parse in (text, path):  # any text is a name or a path
            continue
        with pytest.raises(SettingsError, match=variable.name):
            load_settings({variable.name: "-x"})


def test_a_backtest_start_that_is_not_a_trading_day_is_refused_naming_the_next():
    from alchemy_pipeline.definitions import build_definitions

    with pytest.raises(
        SettingsError, match="ALCHEMY_BACKTEST_START=2015-01-10 is not a trading day: the next one is 2015-01-12"
    ):
        build_definitions(load_settings({"ALCHEMY_BACKTEST_START": "2015-01-10"}))
