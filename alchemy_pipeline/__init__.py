"""Alchemy: daily double moving-average trading signals for Chinese ETFs."""
