"""Every environment variable the pipeline reads, parsed and checked in one place.

A bad or missing setting fails at once with a message that names the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


class SettingsError(ValueError):
    """An environment variable is missing or unusable."""


ENVIRONMENTS = ("local",)
PRICE_SOURCES = ("tushare", "demo")


@dataclass(frozen=True)
class Settings:
    env: str
    price_source: str
    tushare_token_var: str | None
    tushare_api_url: str | None
    tushare_timeout: float
    universe_path: str | None
    data_dir: Path
    publish_dir: Path
    site_url: str
    notify_max_age_days: int
    ma_short: int
    ma_long: int


def _int(environ, name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r} must not be negative")
    return value


def _float(environ, name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    try:
        value = float(raw) if raw else default
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r} must be positive")
    return value


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    env = environ.get("ALCHEMY_ENV", "").strip() or "local"
    if env not in ENVIRONMENTS:
        raise SettingsError(f"ALCHEMY_ENV={env!r} is not supported; use one of {', '.join(ENVIRONMENTS)}")
    # The seed read TUSHARE_API_TOKEN; both names are honoured, the SDK's own name first.
    token_var = next((v for v in ("TUSHARE_TOKEN", "TUSHARE_API_TOKEN") if environ.get(v, "").strip()), None)
    price_source = environ.get("ALCHEMY_PRICE_SOURCE", "").strip() or ("tushare" if token_var else "demo")
    if price_source not in PRICE_SOURCES:
        raise SettingsError(
            f"ALCHEMY_PRICE_SOURCE={price_source!r} is not supported; use one of {', '.join(PRICE_SOURCES)}"
        )
    if price_source == "tushare" and token_var is None:
        raise SettingsError(
            "ALCHEMY_PRICE_SOURCE=tushare needs a Tushare token in TUSHARE_TOKEN (or TUSHARE_API_TOKEN)"
        )
    data_dir = Path(environ.get("ALCHEMY_DATA_DIR", "").strip() or ".alchemy/data").resolve()
    publish_dir = Path(environ.get("ALCHEMY_PUBLISH_DIR", "").strip() or ".alchemy/site").resolve()
    return Settings(
        env=env,
        price_source=price_source,
        tushare_token_var=token_var,
        tushare_api_url=environ.get("TUSHARE_API_URL", "").strip() or None,
        tushare_timeout=_float(environ, "TUSHARE_TIMEOUT", 30.0),
        universe_path=environ.get("ALCHEMY_UNIVERSE", "").strip() or None,
        data_dir=data_dir,
        publish_dir=publish_dir,
        site_url=(environ.get("ALCHEMY_SITE_URL", "").strip() or publish_dir.as_uri()).rstrip("/"),
        notify_max_age_days=_int(environ, "ALCHEMY_NOTIFY_MAX_AGE_DAYS", 3),
        ma_short=_int(environ, "ALCHEMY_MA_SHORT", 11),
        ma_long=_int(environ, "ALCHEMY_MA_LONG", 22),
    )
