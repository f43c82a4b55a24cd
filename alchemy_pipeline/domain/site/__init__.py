"""The site and its messages: the report, the pages (day, front, history, rules, each fund), the charts,
publishing to a store, and the notification of subscribers."""
