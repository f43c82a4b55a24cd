"""The real tushare SDK over HTTP against the Tushare-protocol test server."""

import datetime as dt

import pandas as pd
import pytest

from alchemy_pipeline.defs.resources import TushareResource, build_resources
from alchemy_pipeline.domain.market.prices import (
    ADJ_FIELDS,
    FUND_ADJ,
    PRICE_COLUMNS,
    QUERIES_IN_FLIGHT,
    PriceRequest,
    fetch_prices,
    plan_queries,
)
from alchemy_pipeline.domain.market.tushare_api import (
    RateLimiter,
    TushareClient,
    VendorAPIError,
    VendorAuthError,
    VendorDataError,
    VendorHTTPError,
    VendorTimeoutError,
)
from alchemy_pipeline.settings import load_settings
from tests.conftest import vendor_tables
from tests.tushare_server import VALID_TOKEN, Fault

CODES = ["510300.SH", "159915.SZ", "512880.SH"]
MORE_OF_THE_MARKET = ["588000.SH", "159919.SZ", "510500.SH", "512100.SH", "159922.SZ"]


def tushare_resource(server, token=VALID_TOKEN, attempts=1, timeout=5.0) -> TushareResource:
    """The price source the settings pick for this server, as the pipeline builds it."""
    environ = {"TUSHARE_TOKEN": token, "TUSHARE_API_URL": server.url, "TUSHARE_TIMEOUT": str(timeout),
               "TUSHARE_RETRY_ATTEMPTS": str(attempts), "TUSHARE_RETRY_BASE_SECONDS": "0.01"}  # fmt: skip
    resource = build_resources(load_settings(environ))["prices"]
    # The token is read from the environment variable the settings name, when the resource is used.
    return resource.model_copy(update={"token": token})


def client_for(server, token=VALID_TOKEN, attempts=1, timeout=5.0):
    return tushare_resource(server, token, attempts, timeout).client(CODES)


def sessions(tables, start, end):
    dates = sorted({d for d in tables["fund_daily"]["trade_date"] if start <= d <= end})
    return [dt.date(int(d[:4]), int(d[4:6]), int(d[6:])) for d in dates]


def test_a_day_is_one_call_per_api_for_all_funds(tushare_server_factory):
    tables = vendor_tables([*CODES, "588000.SH"], "2024-06-03", "2024-06-28")
    server = tushare_server_factory(tables)
    table = fetch_prices(client_for(server), CODES, [dt.date(2024, 6, 28)])
    assert [c["api_name"] for c in server.calls] == ["fund_daily", "fund_adj"]
    assert server.calls[0]["params"]["trade_date"] == "20240628"
    assert server.calls[0]["path"] == "/dataapi/fund_daily"
    assert sorted(table["ts_code"]) == sorted(CODES)  # funds outside the universe are dropped
    assert list(table.columns) == PRICE_COLUMNS
    assert table["adj_factor"].notna().all()


def paging_client(server):
    return TushareClient(client_for(server)._api, page_limit=server.row_cap)  # small tables page too


def expected_rows(tables, codes, days):
    wanted = {d.strftime("%Y%m%d") for d in days}
    daily = tables["fund_daily"]
    return int((daily["ts_code"].isin(codes) & daily["trade_date"].isin(wanted)).sum())


def test_a_small_universe_is_fetched_per_fund_over_the_range_and_paged(tushare_server_factory):
    tables = vendor_tables([*CODES, *MORE_OF_THE_MARKET], "2023-01-03", "2024-06-28")
    server = tushare_server_factory(tables, row_cap=100)
    days = sessions(tables, "20230103", "20240628")
    table = fetch_prices(paging_client(server), CODES, days)
    assert len(table) == expected_rows(tables, CODES, days) == len(days) * len(CODES)
    assert not table.duplicated(["ts_code", "trade_date"]).any() and table["adj_factor"].notna().all()
    # The last day for every fund at once, then each fund over the other days, page by page.
    daily = server.calls_to("fund_daily")
    pages = -(-len(days) // 100)
    assert daily[0]["params"]["trade_date"] == "20240628"
    assert len(daily) == 1 + len(CODES) * pages
    assert {c["params"]["ts_code"] for c in daily[1:]} == set(CODES)
    assert {c["params"]["offset"] for c in daily[1:]} == {i * 100 for i in range(pages)}
    # fund_adj names several funds in one call: one paged query for the three.
    adj = server.calls_to("fund_adj")
    assert {c["params"]["ts_code"] for c in adj[1:]} == {",".join(CODES)}
    assert len(adj) == 1 + -(-len(CODES) * (len(days) - 1) // 100)


def test_most_of_the_market_is_fetched_as_one_paged_range(tushare_server_factory):
    market = [*CODES, *MORE_OF_THE_MARKET]
    universe = market[:-1]
    tables = vendor_tables(market, "2024-01-02", "2024-06-28")
    server = tushare_server_factory(tables, row_cap=100)
    days = sessions(tables, "20240102", "20240628")
    table = fetch_prices(paging_client(server), universe, days)
    assert len(table) == expected_rows(tables, universe, days) == len(days) * len(universe)
    assert sorted(table["ts_code"].unique()) == sorted(universe)  # the fund outside the universe is dropped
    assert not table.duplicated(["ts_code", "trade_date"]).any() and table["adj_factor"].notna().all()
    daily = server.calls_to("fund_daily")[1:]
    assert not any("ts_code" in c["params"] or "trade_date" in c["params"] for c in daily)
    whole_market_rows = len(market) * (len(days) - 1)
    # One call per page (of consecutive ranges fetched side by side), not one per day or per fund.
    assert len(daily) <= -(-whole_market_rows // 100) + QUERIES_IN_FLIGHT - 1
    assert len(daily) < min(len(days) - 1, len(universe) * 2)


def test_queries_are_planned_in_the_fewest_calls():
    days = [d.date() for d in pd.bdate_range("2024-01-02", "2024-12-31")]  # 261 weekdays
    funds = [f"{i:06d}.SH" for i in range(1500)]
    # A daily run: the last day was already asked for, nothing else is left.
    assert plan_queries(funds, [], 1800, 1, 2000) == []
    # Three funds of a market of 1,800 over a year: 3 calls per fund, against 235 for the whole market.
    assert [q["ts_code"] for q in plan_queries(funds[:3], days, 1800, 1, 2000)] == funds[:3]
    # 1,500 of those funds: the whole market, paged (~235 calls), beats a call per day (261) or per fund;
    # in consecutive ranges, fetched side by side.
    ranges = plan_queries(funds, days, 1800, 1, 2000)
    assert len(ranges) == QUERIES_IN_FLIGHT and all("ts_code" not in q and "trade_date" not in q for q in ranges)
    assert ranges[0]["start_date"] == "20240102" and ranges[-1]["end_date"] == "20241231"
    starts = [dt.datetime.strptime(q["start_date"], "%Y%m%d").date() for q in ranges[1:]]
    ends = [dt.datetime.strptime(q["end_date"], "%Y%m%d").date() for q in ranges[:-1]]
    assert all(days.index(start) == days.index(end) + 1 for start, end in zip(starts, ends, strict=True))
    # ...unless funds can be named together, 100 a call: 15 queries of 14 pages (210 calls).
    batches = plan_queries(funds, days, 1800, 100, 2000)
    assert len(batches) == 15 and all(len(q["ts_code"].split(",")) == 100 for q in batches)
    # Two days a year apart: a call per day.
    assert plan_queries(funds, [days[0], days[-1]], 1800, 1, 2000) == [{"trade_date": "20240102"},
                                                                       {"trade_date": "20241231"}]  # fmt: skip
    # A market of unknown size is never fetched whole.
    assert all("trade_date" in q for q in plan_queries(funds, days, None, 1, 2000))


def test_an_http_error_is_never_taken_for_no_data(tushare_server_factory):
    server = tushare_server_factory(vendor_tables(CODES, "2024-06-03", "2024-06-28"))
    server.faults.append(Fault(http_status=502))
    with pytest.raises(VendorHTTPError, match=r"fund_daily .*HTTP error"):
        fetch_prices(client_for(server), CODES, [dt.date(2024, 6, 28)])


def test_a_vendor_error_code_raises_with_its_message(tushare_server_factory):
    server = tushare_server_factory(vendor_tables(CODES, "2024-06-03", "2024-06-28"))
    server.faults.append(Fault(code=40203, msg="抱歉，您每分钟最多访问该接口200次"))
    with pytest.raises(VendorAPIError, match="每分钟最多访问"):
        fetch_prices(client_for(server), CODES, [dt.date(2024, 6, 28)])


def test_a_wrong_token_fails_fast_naming_the_setting_never_the_token(tushare_server_factory):
    server = tushare_server_factory(vendor_tables(CODES, "2024-06-03", "2024-06-28"))
    with pytest.raises(VendorAuthError, match="TUSHARE_TOKEN") as caught:
        fetch_prices(client_for(server, token="secret-wrong-token", attempts=5), CODES, [dt.date(2024, 6, 28)])
    assert len(server.calls) == 1  # no retry can fix a token
    assert "secret-wrong-token" not in str(caught.value)


@pytest.mark.parametrize(
    "faults",
    [
        [Fault(http_status=500), Fault(http_status=502), Fault(http_status=503)],
        [Fault(code=50001, msg="系统内部错误"), Fault(code=-2001, msg="服务繁忙")],
        [Fault(code=40203, msg="抱歉，您每分钟最多访问该接口200次")],
        [Fault(delay=1.5)],  # the client's timeout is 1 s
    ],
    ids=["5xx-burst", "vendor-errors", "rate-limit", "timeout"],
)
def test_recoverable_faults_are_retried_to_the_clean_result(tushare_server_factory, faults):
    tables = vendor_tables(CODES, "2024-01-02", "2024-06-28")
    days = sessions(tables, "20240102", "20240628")
    clean = fetch_prices(client_for(tushare_server_factory(tables), timeout=1.0), CODES, days)
    server = tushare_server_factory(tables)
    server.faults.extend(faults)
    client = client_for(server, attempts=5, timeout=1.0)
    faulty = fetch_prices(client, CODES, days)
    assert faulty.equals(clean)
    assert sum(client.retries.values()) == len(faults)


def test_faults_past_the_attempts_fail_with_the_last_cause(tushare_server_factory):
    server = tushare_server_factory(vendor_tables(CODES, "2024-06-03", "2024-06-28"))
    server.faults.extend([Fault(delay=1.5)] * 3)
    with pytest.raises(VendorTimeoutError, match="no answer"):
        fetch_prices(client_for(server, attempts=3, timeout=1.0), CODES, [dt.date(2024, 6, 28)])
    assert len(server.calls) == 3


def fake_time():
    now, waits = [0.0], []

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    return now, waits, sleep


def test_rate_limiter_spaces_calls_per_api_within_a_minute_of_their_answers():
    now, waits, sleep = fake_time()
    limiter = RateLimiter(3, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        assert limiter.acquire("fund_daily") == 0
        now[0] += 1.0  # each call is answered a second after it starts
        limiter.release("fund_daily")
    assert limiter.acquire("fund_adj") == 0  # another API has its own budget
    now[0] = 10.0
    # The first call was answered at 1 s: the vendor may have counted it as late as that, so it leaves
    # the window at 61 s, not 60.
    assert limiter.acquire("fund_daily") == pytest.approx(51.0)
    assert waits == [pytest.approx(51.0)]


def test_rate_limiter_counts_calls_still_in_flight():
    now, waits, sleep = fake_time()

    def answer_the_call_in_flight(seconds):
        sleep(seconds)
        if len(waits) == 3:  # the call in flight is answered while the next one waits
            limiter.release("fund_daily")

    limiter = RateLimiter(1, clock=lambda: now[0], sleep=answer_the_call_in_flight)
    limiter.acquire("fund_daily")
    waited = limiter.acquire("fund_daily")
    assert waits[:3] == [RateLimiter.POLL_SECONDS] * 3  # nothing may start while the budget is in flight
    assert waited == pytest.approx(3 * RateLimiter.POLL_SECONDS + 60.0, abs=0.01)  # then 60 s after that answer


def test_a_day_the_vendor_has_not_published_is_an_empty_table_not_an_error(tushare_server_factory):
    server = tushare_server_factory(vendor_tables(CODES, "2024-06-03", "2024-06-27"))
    table = fetch_prices(client_for(server), CODES, [dt.date(2024, 6, 28)])
    assert table.empty and list(table.columns) == PRICE_COLUMNS


def test_a_failing_api_fails_the_fetch_with_its_own_error(tushare_server_factory):
    # fund_daily's first call goes alone and succeeds; fund_adj, fetched beside it, is refused.
    tables = vendor_tables(CODES, "2024-06-03", "2024-06-28")
    server = tushare_server_factory(tables, faults=[Fault(), Fault(code=-1, msg="内部错误")])
    with pytest.raises(VendorAPIError, match=r"fund_adj.*内部错误"):
        fetch_prices(client_for(server), CODES, [dt.date(2024, 6, 28)])


def test_both_apis_are_fetched_side_by_side(tushare_server_factory):
    tables = vendor_tables(CODES, "2024-06-03", "2024-06-28")
    server = tushare_server_factory(tables, latency=0.2, row_cap=20)
    fetch_prices(paging_client(server), CODES, sessions(tables, "20240603", "20240628"))
    assert len(server.calls_to("fund_daily")) == 1 + 3  # the last day, then 3 x 19 rows in pages of 20
    # fund_daily's first call goes alone; fund_adj then overlaps fund_daily's pages rather than waiting for
    # the last one's answer (which of the concurrent requests arrives first is up to the threads).
    first_adj = server.calls_to("fund_adj")[0]
    assert server.calls_to("fund_daily")[0]["answered"] <= first_adj["arrived"]
    assert first_adj["arrived"] < max(c["answered"] for c in server.calls_to("fund_daily"))


def one_day_tables(**changes):
    """Three funds on one day; ``changes`` replace rows or values of the vendor's tables."""
    tables = vendor_tables(CODES, "2024-06-28", "2024-06-28")
    for name, change in changes.items():
        tables[name] = change(tables[name])
    return tables


def test_a_second_bar_of_a_fund_on_a_day_is_kept_for_the_checks_to_see(tushare_server_factory):
    tables = one_day_tables(fund_daily=lambda t: pd.concat([t, t.iloc[[0]].assign(close=9.99)], ignore_index=True))
    table = fetch_prices(client_for(tushare_server_factory(tables)), CODES, [dt.date(2024, 6, 28)])
    repeated = table[table["ts_code"] == tables["fund_daily"]["ts_code"].iloc[0]]
    assert len(table) == 4 and len(repeated) == 2 and 9.99 in set(repeated["close"])
    assert repeated["adj_factor"].notna().all()  # both bars get the fund's factor of the day


def test_a_second_factor_of_a_fund_on_a_day_is_refused_naming_both(tushare_server_factory):
    tables = one_day_tables(fund_adj=lambda t: pd.concat([t, t.iloc[[1]].assign(adj_factor=2.0)], ignore_index=True))
    fund = tables["fund_adj"]["ts_code"].iloc[1]
    with pytest.raises(VendorDataError, match=rf"more than one factor for {fund} 2024-06-28"):
        fetch_prices(client_for(tushare_server_factory(tables)), CODES, [dt.date(2024, 6, 28)])


def test_a_value_that_is_not_a_number_fails_naming_the_api(tushare_server_factory):
    tables = one_day_tables(fund_adj=lambda t: t.assign(adj_factor=["1.0", "n/a", "1.0"]))
    with pytest.raises(VendorDataError, match=r"fund_adj returned a value that is not a number.*n/a"):
        fetch_prices(client_for(tushare_server_factory(tables)), CODES, [dt.date(2024, 6, 28)])


def test_a_date_that_is_not_yyyymmdd_fails_naming_it():
    # The test server indexes its tables by date, so it cannot serve a malformed one: the page is built
    # here as the SDK builds it (text columns as they came over the wire).
    page = pd.DataFrame([["510300.SH", "2024-06-28", 1.0], ["510300.SH", "20240627", 1.0]], columns=ADJ_FIELDS)
    with pytest.raises(
        VendorDataError, match=r"fund_adj returned trade_date values that are not YYYYMMDD: \['2024-06-28'\]"
    ):
        PriceRequest(CODES, [dt.date(2024, 6, 28)]).page_rows(FUND_ADJ, page)
