"""The real tushare SDK over HTTP against the Tushare-protocol test server."""

import datetime as dt

import pytest

from alchemy_pipeline.defs.resources import TushareResource
from alchemy_pipeline.domain.prices import PRICE_COLUMNS, fetch_prices
from alchemy_pipeline.domain.tushare_api import VendorAPIError, VendorHTTPError
from tests.conftest import vendor_tables
from tests.tushare_server import VALID_TOKEN, Fault

CODES = ["510300.SH", "159915.SZ", "512880.SH"]


def client_for(server, token=VALID_TOKEN):
    return TushareResource(token=token, api_url=server.url, timeout=5).client(CODES)


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
    client = TushareResource(token=VALID_TOKEN, api_url=server.url).client(CODES)
    client._page_limit = 100  # the server's cap, so paging is exercised with small tables
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


def test_a_wrong_token_names_the_vendor_answer(tushare_server_factory):
    server = tushare_server_factory(vendor_tables(CODES, "2024-06-03", "2024-06-28"))
    with pytest.raises(VendorAPIError, match="token"):
        fetch_prices(client_for(server, token="wrong"), CODES, [dt.date(2024, 6, 28)])


def test_a_day_the_vendor_has_not_published_is_an_empty_table_not_an_error(tushare_server_factory):
    server = tushare_server_factory(vendor_tables(CODES, "2024-06-03", "2024-06-27"))
    table = fetch_prices(client_for(server), CODES, [dt.date(2024, 6, 28)])
    assert table.empty and list(table.columns) == PRICE_COLUMNS
