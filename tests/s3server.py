"""A stand-in S3 for tests (a fixture plugin): moto's standalone server on 127.0.0.1, a fresh bucket per test.

moto plays the object store, since no production S3 server ships in the package
registries; boto3, the real client, talks to it over HTTP exactly as to AWS or MinIO.
(moto checks no signatures, and ignores If-Range.)

- ``s3_server`` (session): ``ThreadedMotoServer`` on 127.0.0.1 at an ephemeral port, in
  this process. While it runs, the environment holds fake credentials
  (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY = "testing", AWS_DEFAULT_REGION = us-east-1)
  and points AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE at nothing, so registry
  subprocesses started meanwhile inherit them and never see a real account. The
  endpoint is *not* put in AWS_ENDPOINT_URL: tests pass it (``--s3-endpoint``).
- ``s3_bucket``: a new empty bucket for this test, emptied and deleted afterwards; an
  ``S3Bucket`` with ``.endpoint``, ``.name``, ``.client`` (boto3),
  ``.storage_url(prefix)`` → ``s3://NAME/PREFIX``, ``.keys(prefix)`` and
  ``.open_uploads(prefix)`` (unfinished multipart uploads, as (key, upload id)).
- ``s3_endpoint``: the endpoint URL of that fresh bucket's server (for tests that need
  only the URL and the bucket name, take ``s3_bucket``).

Without moto's server or boto3 the tests that need them skip, except with CI=true, where
they fail: CI must run them.

tests/conftest.py loads this module as a plugin (``pytest_plugins``), so every test module
can ask for the fixtures without importing them; one server serves the whole session.
Tests import only the classes (``from s3server import S3Bucket``) when they need them.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

FAKE_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
UNSET_ENV = ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


class S3Server:
    """One moto server in a thread of this process."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
        self._saved = {k: os.environ.get(k) for k in (*FAKE_ENV, *UNSET_ENV)}
        os.environ.update(FAKE_ENV)
        for k in UNSET_ENV:
            os.environ.pop(k, None)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._names = itertools.count(1)

    def client(self):
        """A boto3 S3 client on this server."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint,
                                              config=Config(signature_version="s3v4"))

    def new_bucket(self) -> S3Bucket:
        """Create an empty bucket with a name never used before in this session."""
        bucket = S3Bucket(self.endpoint, f"nnpm-test-{os.getpid()}-{next(self._names)}", self.client())
        bucket.client.create_bucket(Bucket=bucket.name)
        return bucket

    def stop(self) -> None:
        """Stop the server and put the environment back."""
        try:
            self._server.stop()
        finally:
            for k, v in self._saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@dataclass
class S3Bucket:
    """One bucket on the stand-in server."""

    endpoint: str
    name: str
    client: object

    def storage_url(self, prefix: str = "") -> str:
        """The registry's --storage-url for this bucket and prefix."""
        return f"s3://{self.name}/{prefix}" if prefix else f"s3://{self.name}"

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under `prefix`."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", ())]

    def open_uploads(self, prefix: str = "") -> list[tuple[str, str]]:
        """Unfinished multipart uploads under `prefix`: (key, upload id)."""
        pages = self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.name, Prefix=prefix)
        return [(u["Key"], u["UploadId"]) for page in pages for u in page.get("Uploads", ())]

    def remove(self) -> None:
        """Abort its uploads, delete its objects, then the bucket itself (frees moto's memory)."""
        for key, upload_id in self.open_uploads():
            self.client.abort_multipart_upload(Bucket=self.name, Key=key, UploadId=upload_id)
        for key in self.keys():
            self.client.delete_object(Bucket=self.name, Key=key)
        self.client.delete_bucket(Bucket=self.name)


def _missing() -> str | None:
    """What is not installed of boto3 and moto's server, or None."""
    for name in ("boto3", "moto", "moto.server"):
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ImportError:
            return name
    return None


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """One moto server for the whole session; without moto or boto3 a skip, or a failure under CI=true."""
    missing = _missing()
    if missing is not None:
        reason = f"{missing} is not installed; pip install 'moto[server]' boto3"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = S3Server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> Iterator[S3Bucket]:
    """A fresh empty bucket for this test, removed afterwards."""
    bucket = s3_server.new_bucket()
    yield bucket
    bucket.remove()


@pytest.fixture
def s3_endpoint(s3_bucket: S3Bucket) -> str:
    """The stand-in server's endpoint URL (a fresh bucket, `s3_bucket`, exists for this test)."""
    return s3_bucket.endpoint
