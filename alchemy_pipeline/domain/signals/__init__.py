"""The signals: the double moving-average rule for one fund on one day (``rule``, the definition) and the
same for every fund and day of a range at once (``fast_path``)."""
