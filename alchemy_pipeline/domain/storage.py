"""Key-value blob stores: a local directory or an S3 bucket, behind one small interface."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str | None = None, cache_control: str | None = None) -> None:
        """Writes a whole object; readers see the old object or the new one, never a part."""

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""

    def keys(self, prefix: str) -> set[str]:
        """The keys that start with ``prefix`` (a folder path ending with ``/``)."""


class LocalBlobStore:
    """A directory; each file is replaced atomically (written aside, then renamed)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def put(self, key: str, data: bytes, content_type: str | None = None, cache_control: str | None = None) -> None:
        atomic_write(self.path(key), data)

    def get(self, key: str) -> bytes | None:
        path = self.path(key)
        return path.read_bytes() if path.exists() else None

    def keys(self, prefix: str) -> set[str]:
        base = self.root / prefix
        if not base.is_dir():
            return set()
        return {f"{prefix}{p.name}" for p in base.iterdir() if p.is_file() and not p.name.startswith(".")}


class S3BlobStore:
    """Objects under an optional prefix of a bucket. S3 replaces an object whole on each put. Objects
    get no ACL: the bucket's own policy (private, read through CloudFront) applies."""

    def __init__(self, client, bucket: str, prefix: str = ""):
        self._client = client
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""

    def put(self, key: str, data: bytes, content_type: str | None = None, cache_control: str | None = None) -> None:
        extra = {}
        if content_type:
            extra["ContentType"] = content_type
        if cache_control:
            extra["CacheControl"] = cache_control
        self._client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, **extra)

    def get(self, key: str) -> bytes | None:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self._client.exceptions.NoSuchKey:
            return None

    def keys(self, prefix: str) -> set[str]:
        found = set()
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            found.update(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        return found


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
