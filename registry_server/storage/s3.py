"""`S3BlobStore`: blobs in any S3-compatible bucket, through boto3 (imported only here).

    s3://BUCKET/PREFIX/blobs/sha256/ab/ab12…ef     one object per blob, named by its sha256

An upload is hashed and counted while it streams. A blob smaller than one part is
buffered, checked, then written by one `put_object`. A larger one goes up as a multipart
upload straight to its final key, one part (≥ 8 MiB; S3 wants ≥ 5 MiB but for the last)
at a time, while the next part is read, so a server holds at most a few parts of it in
memory. The upload is completed only after the whole body matched its size and sha256,
and aborted otherwise. S3 shows no object for a multipart upload until it is completed,
so a reader never sees a partial or unverified blob, and a server killed mid-upload
leaves only an unfinished upload: invisible, never served, and aborted by `sweep()` once
it has been idle for an hour (servers call it at start-up).

Endpoint, region and credentials come from boto3's usual sources (AWS_ENDPOINT_URL,
AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, ~/.aws, instance roles);
`endpoint_url` (--s3-endpoint) overrides the endpoint. boto3 calls block, so the async
upload path runs them in threads; the other methods are called from threads already
(FastAPI runs sync routes and StreamingResponse iterators in its thread pool).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.to_thread
import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from nnpm.errors import ConfigError, NotFoundError, RegistryError
from nnpm.format.fields import is_digest
from registry_server.storage.base import (
    CHUNK,
    STALE_UPLOAD_AFTER,
    BlobStore,
    StoredBlob,
    check_digest,
    drain,
    sized_blocks,
)

log = logging.getLogger("registry_server")

MIB = 1024 * 1024
PART = 8 * MIB                  # smallest part; blobs below it go up in one put_object
MAX_PARTS = 10_000              # S3's limit per multipart upload
DOWNLOAD_URL_SECONDS = 300      # lifetime of a presigned download URL (--redirect-downloads)
CONTENT_TYPE = "application/octet-stream"
CACHE_CONTROL = "public, max-age=31536000, immutable"  # sent by S3 itself on redirected downloads


def part_size(size: int) -> int:
    """Bytes per part for a blob of `size`: 8 MiB, or more (whole MiB) to stay within 10,000 parts."""
    need = -(-size // (MAX_PARTS - 1))
    return max(PART, -(-need // MIB) * MIB)


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "")


@contextmanager
def _mapped(what: str) -> Iterator[None]:
    """boto3 failures (network, credentials, S3 errors not handled by the caller) → 503 RegistryError."""
    try:
        yield
    except ClientError as exc:
        log.error("blob storage: %s failed: %s", what, exc)
        raise RegistryError(f"the registry's blob storage failed to {what} ({_code(exc) or _status(exc)})",
                            status=503, hint="try again later; if it persists, tell the registry's operator"
                            ) from None
    except BotoCoreError as exc:
        log.error("blob storage: %s failed: %s", what, exc)
        raise RegistryError(f"the registry's blob storage failed to {what} ({type(exc).__name__})",
                            status=503, hint="try again later; if it persists, tell the registry's operator"
                            ) from None


class S3BlobStore(BlobStore):
    """Blobs as objects in one bucket under one prefix; one boto3 client, shared by threads."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url or None,
            config=Config(signature_version="s3v4", max_pool_connections=64, retries={"mode": "standard"}))
        self._parts = ThreadPoolExecutor(max_workers=16, thread_name_prefix="s3-part")

    def __repr__(self) -> str:
        return f"S3BlobStore('s3://{self.bucket}/{self.prefix}')"

    # -- keys ------------------------------------------------------------------------------------
    @property
    def blobs_prefix(self) -> str:
        """Key prefix of every blob object (and of every upload in flight)."""
        return f"{self.prefix}/blobs/" if self.prefix else "blobs/"

    def key(self, digest: str) -> str:
        """The object key of a blob."""
        return f"{self.blobs_prefix}sha256/{digest[:2]}/{digest}"

    def check(self) -> None:
        """ConfigError unless the bucket is there and these credentials may use it (called at start-up)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            raise ConfigError(f"cannot use bucket {self.bucket!r}: {_code(exc) or _status(exc)}",
                              hint="create the bucket, and check the endpoint, region and credentials "
                                   "(AWS_ENDPOINT_URL or --s3-endpoint, AWS_ACCESS_KEY_ID, ...)") from None
        except BotoCoreError as exc:
            raise ConfigError(f"cannot reach bucket {self.bucket!r}: {exc}",
                              hint="check the endpoint (AWS_ENDPOINT_URL or --s3-endpoint) and credentials"
                              ) from None

    # -- reads -----------------------------------------------------------------------------------
    def size(self, digest: str) -> int | None:
        with _mapped("look up a blob"):
            try:
                return int(self.client.head_object(Bucket=self.bucket, Key=self.key(digest))["ContentLength"])
            except ClientError as exc:
                if _status(exc) == 404:
                    return None
                raise

    def open_range(self, digest: str, offset: int = 0, length: int | None = None,
                   chunk_size: int = CHUNK) -> Iterator[bytes]:
        if length is not None and length <= 0:
            if self.size(digest) is None:
                raise NotFoundError(f"blob sha256:{digest} is not stored")
            return iter(())
        kw = {}
        if offset > 0 or length is not None:
            kw["Range"] = f"bytes={offset}-" + (str(offset + length - 1) if length is not None else "")
        with _mapped("read a blob"):
            try:  # asked now, so absence is known before streaming
                body = self.client.get_object(Bucket=self.bucket, Key=self.key(digest), **kw)["Body"]
            except ClientError as exc:
                if _status(exc) == 404:
                    raise NotFoundError(f"blob sha256:{digest} is not stored") from None
                if _status(exc) == 416:  # the blob is there, the offset is at or past its end
                    return iter(())
                raise
        return _stream(body, chunk_size)

    def materialize(self, digest: str, dest: Path, *, link: bool = True) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _mapped("download a blob"):
            try:
                self.client.download_file(self.bucket, self.key(digest), str(dest))
            except ClientError as exc:
                if _status(exc) == 404:
                    raise NotFoundError(f"blob sha256:{digest} is not stored") from None
                raise

    def list_blobs(self) -> Iterator[StoredBlob]:
        with _mapped("list blobs"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.blobs_prefix + "sha256/")
            for page in pages:
                for obj in page.get("Contents", ()):
                    digest = obj["Key"].rpartition("/")[2]
                    if is_digest(digest) and obj["Key"] == self.key(digest):
                        yield StoredBlob(digest, int(obj["Size"]), obj["LastModified"].timestamp())

    def delete(self, digest: str) -> None:
        with _mapped("delete a blob"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(digest))

    def download_url(self, digest: str, *, disposition: str | None = None) -> str | None:
        params = {"Bucket": self.bucket, "Key": self.key(digest)}
        if disposition:
            params["ResponseContentDisposition"] = disposition
        with _mapped("sign a download URL"):
            return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=DOWNLOAD_URL_SECONDS)

    # -- writes ----------------------------------------------------------------------------------
    async def put(self, digest: str, chunks: AsyncIterator[bytes], *, size: int) -> bool:
        if await anyio.to_thread.run_sync(self.exists, digest):
            await drain(chunks)
            return False
        key, step = self.key(digest), part_size(size)
        h, data = hashlib.sha256(), b""
        upload: _Multipart | None = None
        try:
            async for block in sized_blocks(chunks, size, step):
                await anyio.to_thread.run_sync(h.update, block)
                if len(block) < step:
                    data = block  # the rest, always the last block: the last part, or a small blob alone
                    continue
                if upload is None:
                    upload = await anyio.to_thread.run_sync(self._start, key)
                await upload.send(block)
            check_digest(h.hexdigest(), digest)
            if upload is None:
                await anyio.to_thread.run_sync(self._put_small, key, data)
            else:
                if data:
                    await upload.send(data)
                await upload.complete()
                upload = None
            return True
        finally:
            if upload is not None:
                with anyio.CancelScope(shield=True):
                    await upload.abort()

    def _put_small(self, key: str, data: bytes) -> None:
        with _mapped("store a blob"):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=CONTENT_TYPE,
                                   CacheControl=CACHE_CONTROL)

    def _start(self, key: str) -> _Multipart:
        with _mapped("start an upload"):
            answer = self.client.create_multipart_upload(Bucket=self.bucket, Key=key, ContentType=CONTENT_TYPE,
                                                         CacheControl=CACHE_CONTROL)
        return _Multipart(self, key, answer["UploadId"])

    # -- clean-up --------------------------------------------------------------------------------
    def sweep(self, older_than: float = STALE_UPLOAD_AFTER) -> int:
        """Abort multipart uploads under the prefix that started, and last received a part, over `older_than` s ago."""
        cutoff = datetime.fromtimestamp(time.time() - older_than, UTC)
        aborted = 0
        with _mapped("list unfinished uploads"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.blobs_prefix)
            stale = [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", ())
                     if u["Initiated"] < cutoff]
        for key, upload_id in stale:
            try:
                parts = [p for page in self.client.get_paginator("list_parts").paginate(
                    Bucket=self.bucket, Key=key, UploadId=upload_id) for p in page.get("Parts", ())]
                if any(p["LastModified"] >= cutoff for p in parts):
                    continue  # still receiving parts: another server's live upload
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                aborted += 1
            except (ClientError, BotoCoreError) as exc:  # gone meanwhile, or no right to: harmless either way
                log.info("could not abort the stale upload of %s: %s", key, exc)
        return aborted


class _Multipart:
    """One multipart upload at a blob's final key: at most one part in flight while the next is read."""

    def __init__(self, store: S3BlobStore, key: str, upload_id: str) -> None:
        self.store, self.key, self.upload_id = store, key, upload_id
        self.parts: list[dict] = []
        self.sent = 0
        self.pending: Future | None = None

    async def send(self, data: bytes) -> None:
        """Wait for the previous part, then start uploading this one in the background."""
        await self.wait()
        self.sent += 1
        self.pending = self.store._parts.submit(self._upload_part, self.sent, data)

    async def wait(self) -> None:
        """Wait for the part in flight; its failure is raised here."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self.parts.append(await anyio.to_thread.run_sync(pending.result))

    async def complete(self) -> None:
        """Make the object appear, whole, at its key (only ever called on verified bytes)."""
        await self.wait()
        await anyio.to_thread.run_sync(self._complete)

    async def abort(self) -> None:
        """Drop the parts sent; nothing appears at the key. Never raises."""
        try:
            await self.wait()
        except Exception as exc:  # noqa: BLE001 - the upload is being dropped anyway
            log.info("a part of %s failed before the upload was aborted: %s", self.key, exc)
        await anyio.to_thread.run_sync(self._abort)

    def _upload_part(self, number: int, data: bytes) -> dict:
        s = self.store
        with _mapped("store a part of a blob"):
            answer = s.client.upload_part(Bucket=s.bucket, Key=self.key, UploadId=self.upload_id,
                                          PartNumber=number, Body=data)
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def _complete(self) -> None:
        s = self.store
        with _mapped("finish storing a blob"):
            s.client.complete_multipart_upload(Bucket=s.bucket, Key=self.key, UploadId=self.upload_id,
                                               MultipartUpload={"Parts": self.parts})

    def _abort(self) -> None:
        s = self.store
        try:
            s.client.abort_multipart_upload(Bucket=s.bucket, Key=self.key, UploadId=self.upload_id)
        except (ClientError, BotoCoreError) as exc:  # left for sweep(): invisible, never served
            log.warning("could not abort the upload of %s: %s", self.key, exc)


def _stream(body, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()
