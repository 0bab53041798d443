"""Blob storage behind one small interface; routes never touch a path or a bucket.

`storage_from_settings(settings)` picks the store from `ServerSettings.storage_url`:

    ""  or  file:///PATH       DirBlobStore (storage/directory.py), in PATH (default: the --data folder)
    s3://BUCKET/PREFIX         S3BlobStore (storage/s3.py; needs boto3, imported only then)

The interface and the stream helpers both share are in storage/base.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from nnpm.errors import ConfigError
from registry_server.storage.base import BlobStore

if TYPE_CHECKING:
    from registry_server.settings import ServerSettings


def parse_storage_url(url: str) -> tuple[str, str, str]:
    """`""` → ("", "", ""); `file:///PATH` → ("file", "", PATH); `s3://BUCKET/PREFIX` → ("s3", BUCKET, PREFIX)."""
    if not url:
        return "", "", ""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"storage URL {url!r} is not a local folder", hint="write file:///absolute/path")
        return "file", "", unquote(parts.path)
    if parts.scheme == "s3":
        if not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"storage URL {url!r} names no bucket", hint="write s3://BUCKET or s3://BUCKET/PREFIX")
        return "s3", parts.netloc, unquote(parts.path).strip("/")
    raise ConfigError(f"storage URL {url!r} is neither file:///PATH nor s3://BUCKET/PREFIX")


def storage_from_settings(settings: "ServerSettings") -> BlobStore:
    """The blob store `settings.storage_url` names (a folder under --data by default); boto3 loads only for s3://."""
    scheme, bucket, where = parse_storage_url(settings.storage_url)
    if settings.redirect_downloads and scheme != "s3":
        raise ConfigError("--redirect-downloads needs an s3:// storage URL",
                          hint="blobs in a folder are always served by the registry itself")
    if settings.accel_redirect:
        check_accel_prefix(settings.accel_redirect, scheme)
    if scheme == "s3":
        try:
            from registry_server.storage.s3 import S3BlobStore
        except ImportError as exc:
            raise ConfigError(f"s3:// storage needs boto3, which cannot be imported ({exc})",
                              hint="pip install 'nnpm[s3]'") from None
        return S3BlobStore(bucket, where, endpoint_url=settings.s3_endpoint or None)
    if settings.s3_endpoint:
        raise ConfigError("--s3-endpoint is set but the storage URL is not s3://BUCKET/PREFIX")
    from registry_server.storage.directory import DirBlobStore

    folder = Path(where) if scheme == "file" else settings.data_dir
    return DirBlobStore(folder / "blobs", folder / "tmp")


def check_accel_prefix(prefix: str, scheme: str) -> None:
    """Refuse an --accel-redirect the front proxy could not use: a store that is not a folder, or a bad prefix."""
    if scheme == "s3":
        raise ConfigError("--accel-redirect needs blobs in a folder, not s3://",
                          hint="with S3, let clients fetch from the bucket: --redirect-downloads")
    if not prefix.startswith("/") or any(c.isspace() or ord(c) < 0x20 or c in "?#%\\" for c in prefix):
        raise ConfigError(f"--accel-redirect {prefix[:100]!r} is not a URL path",
                          hint="give the front proxy's internal location, e.g. /_nnpm_blobs/")
