"""Key-value blob stores: a local directory or an S3 bucket, behind one small interface."""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Protocol, TypeVar

from alchemy_pipeline.infrastructure.workers import in_order

T = TypeVar("T")
R = TypeVar("R")
# Blob reads and writes wait on the disk or the network, not the CPU: a few in flight hide that wait.
IN_FLIGHT = 8


def in_parallel(work: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``work`` on each item, a few at a time, results in the items' order; the first error is raised."""
    with ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="blobs") as pool:
        return list(pool.map(work, items))


def one_by_one(work: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``in_parallel``'s results as they come, in the items' order, only a few fetched ahead of the one
    taken: a range's objects (a decade is thousands) are never all in memory at once."""
    with ThreadPoolExecutor(max_workers=IN_FLIGHT, thread_name_prefix="blobs") as pool:
        yield from in_order(pool, work, items, 2 * IN_FLIGHT)


class WriteConflict(RuntimeError):
    """A conditional write lost: the object changed (or appeared) since it was read."""


class BlobStore(Protocol):
    def put(self, key: str, data: bytes, content_type: str | None = None, cache_control: str | None = None) -> None:
        """Writes a whole object; readers see the old object or the new one, never a part."""

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""

    def keys(self, prefix: str) -> set[str]:
        """The keys that start with ``prefix`` (a folder path ending with ``/``)."""

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        """The object's bytes and a tag that changes with every write, or None when it does not exist."""

    def put_if(self, key: str, data: bytes, tag: str | None, content_type: str | None = None) -> None:
        """Writes only if the object still has ``tag`` (or, with None, still does not exist); otherwise
        raises WriteConflict. Of concurrent writers that read the same state, exactly one succeeds."""

    def location(self, key: str) -> str:
        """Where the object of ``key`` is, for a person to find it."""

    def batch(self) -> AbstractContextManager[None]:
        """Many puts: each object is replaced whole as ever, and all are durable once the batch ends
        without an error (rather than each as it is written)."""


class LocalBlobStore:
    """A directory; each file is replaced atomically (written aside, then renamed)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._in_batch = False

    def path(self, key: str) -> Path:
        return self.root / key

    def location(self, key: str) -> str:
        return str(self.path(key))

    def put(self, key: str, data: bytes, content_type: str | None = None, cache_control: str | None = None) -> None:
        atomic_write(self.path(key), data, durable=not self._in_batch)

    @contextmanager
    def batch(self) -> Iterator[None]:
        # One sync of the file system at the end rather than an fsync per file: a long range is thousands
        # of files, and each fsync waits on the disk in turn.
        self._in_batch = True
        try:
            yield
        finally:
            self._in_batch = False
        os.sync()

    def get(self, key: str) -> bytes | None:
        path = self.path(key)
        return path.read_bytes() if path.exists() else None

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        data = self.get(key)
        return None if data is None else (data, hashlib.sha256(data).hexdigest())

    def put_if(self, key: str, data: bytes, tag: str | None, content_type: str | None = None) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # An advisory lock per object makes the compare and the swap one step between processes.
        with open(path.parent / f".{path.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.get_tagged(key)
            if (current[1] if current else None) != tag:
                raise WriteConflict(f"{path} changed since it was read")
            atomic_write(path, data)

    def keys(self, prefix: str) -> set[str]:
        base = self.root / prefix
        if not base.is_dir():
            return set()
        # scandir: each entry's type comes with the listing, not from a stat per file (a decade is 15,000).
        with os.scandir(base) as entries:
            return {f"{prefix}{e.name}" for e in entries if e.is_file() and not e.name.startswith(".")}


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

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def batch(self) -> AbstractContextManager[None]:
        return nullcontext()  # an S3 put is durable when it returns

    def get(self, key: str) -> bytes | None:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except self._client.exceptions.NoSuchKey:
            return None

    def get_tagged(self, key: str) -> tuple[bytes, str] | None:
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self._client.exceptions.NoSuchKey:
            return None
        return answer["Body"].read(), answer["ETag"]

    def put_if(self, key: str, data: bytes, tag: str | None, content_type: str | None = None) -> None:
        # S3's conditional writes: If-None-Match for "still absent", If-Match for "still this version".
        condition = {"IfNoneMatch": "*"} if tag is None else {"IfMatch": tag}
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self._client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, **condition, **extra)
        except self._client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise WriteConflict(f"s3://{self.bucket}/{self.prefix}{key} changed since it was read") from None
            raise

    def keys(self, prefix: str) -> set[str]:
        found = set()
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        for page in pages:
            found.update(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        return found


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Replaces the file whole (written aside, then renamed over it); ``durable``: on disk on return."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
