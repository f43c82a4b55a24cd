"""The market: the Tushare client, the trading calendar, the universe of funds, their prices (real or demo)
and the rules that say whether a day's data can be trusted."""
