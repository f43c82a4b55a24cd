"""The real tushare SDK over HTTP against the Tushare-protocol test server."""

import datetime as dt

import pytest

from alchemy_pipeline.defs.resources import TushareResource
from alchemy_pipeline.domain.prices import PRICE_COLUMNS, fetch_prices
from alchemy_pipeline.domain.tushare_api import (
    RateLimiter,
    TushareClient,
    VendorAPIError,
    VendorAuthError,
    VendorHTTPError,
    VendorTimeoutError,
)
from tests.conftest import vendor_tables
from tests.tushare_server import VALID_TOKEN, Fault

CODES = ["510300.SH", "159915.SZ", "512880.SH"]


def client_for(server, token=VALID_TOKEN, attempts=1, timeout=5.0):
    resource = TushareResource(token=token, api_url=server.url, timeout=timeout, retry_attempts=attempts,
                               retry_base_delay=0.01)  # fmt: skip
    return resource.client(CODES)


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


def test_a_range_is_fetched_per_fund_and_paged_past_the_row_cap(tushare_server_factory):
    tables = vendor_tables(CODES, "2023-01-03", "2024-06-28")
    server = tushare_server_factory(tables, row_cap=100)
    days = sessions(tables, "20230103", "20240628")
    resource = TushareResource(token=VALID_TOKEN, api_url=server.url)
    client = TushareClient(resource.client(CODES)._api, page_limit=100)  # the server's cap: small tables page
    table = fetch_prices(client, CODES, days)
    assert len(table) == len(days) * len(CODES)
    assert not table.duplicated(["ts_code", "trade_date"]).any()
    pages = -(-len(days) // 100)
    assert len(server.calls_to("fund_daily")) == len(CODES) * pages
    assert {c["params"]["ts_code"] for c in server.calls} == set(CODES)
    assert {c["params"]["offset"] for c in server.calls} == {i * 100 for i in range(pages)}


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


def test_rate_limiter_spaces_calls_per_api_within_a_minute():
    now = [0.0]
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(3, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        assert limiter.acquire("fund_daily") == 0
    assert limiter.acquire("fund_adj") == 0  # another API has its own budget
    now[0] = 10.0
    assert limiter.acquire("fund_daily") == pytest.approx(50.0)  # the first call leaves the window at 60 s
    assert waits == [pytest.approx(50.0)]


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
    server = tushare_server_factory(tables, latency=0.2)
    fetch_prices(client_for(server), CODES, sessions(tables, "20240603", "20240628"))  # per fund: 3 calls each
    assert len(server.calls_to("fund_daily")) == len(server.calls_to("fund_adj")) == len(CODES)
    # fund_daily's first call goes alone; then fund_adj starts beside fund_daily's second, not after its last.
    assert "fund_adj" in [c["api_name"] for c in server.calls[1:3]]
