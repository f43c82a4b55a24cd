"""Publishing reports to a site store: one key layout wherever the store lives.

Layout: ``reports/YYYY-MM-DD.json|.txt|.html``, ``index.html`` and ``history.json``. A day's JSON is
written last, and the history lists only days whose JSON exists, so a day appears on the site only
once all three of its files are there.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from alchemy_pipeline.domain.report import history_json, render_html, render_index, render_text, report_json

CONTENT_TYPES = {
    ".json": "application/json; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}
# The front page and the history change every day; the dated reports never do.
SHORT_LIVED_KEYS = ("index.html", "history.json")


def content_type(key: str) -> str:
    return CONTENT_TYPES[Path(key).suffix]


class SiteStore(Protocol):
    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def keys(self, prefix: str) -> list[str]: ...


class LocalSiteStore:
    """A directory; each file is replaced atomically, so a reader never sees half of one."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes) -> None:
        atomic_write(self.path(key), data)

    def get(self, key: str) -> bytes | None:
        path = self.path(key)
        return path.read_bytes() if path.exists() else None

    def keys(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(f"{prefix}{p.name}" for p in base.iterdir() if p.is_file() and not p.name.startswith("."))


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def report_key(day: str, suffix: str) -> str:
    return f"reports/{day}{suffix}"


def published_days(store: SiteStore) -> list[str]:
    return sorted(k[len("reports/") : -len(".json")] for k in store.keys("reports/") if k.endswith(".json"))


def publish_reports(store: SiteStore, reports: Iterable[dict]) -> list[str]:
    """Writes each day's three files, then refreshes the front page and the history once."""
    written = []
    for report in reports:
        day = report["trade_date"]
        for suffix, data in (
            (".txt", render_text(report).encode("utf-8")),
            (".html", render_html(report).encode("utf-8")),
            (".json", report_json(report)),
        ):
            store.put(report_key(day, suffix), data)
            written.append(report_key(day, suffix))
    written += refresh_index(store)
    return written


def refresh_index(store: SiteStore) -> list[str]:
    days = published_days(store)
    if not days:
        return []
    latest = json.loads(store.get(report_key(days[-1], ".json")))
    store.put("history.json", history_json(days))
    store.put("index.html", render_index(latest, days).encode("utf-8"))
    return ["history.json", "index.html"]
