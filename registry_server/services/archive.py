"""A published version as a `.nnpm` archive, streamed from the blob store: the bytes `nnpm pack` writes.

`nnpm.format.archive.write_archive` lays out a PAX tar with fixed member metadata:
manifest.json first, then every file in the manifest's order (sorted by path), each
padded to 512 bytes, then two zero blocks and zeros up to a 10240-byte record. `stream`
yields the same bytes member by member, each blob in the store's chunks (1 MiB), so
memory stays flat whatever the size and nothing is written to disk; the length is known
before the first byte.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

from nnpm.errors import IntegrityError, NotFoundError
from nnpm.format.archive import tar_member as member_info  # the one definition of the fixed member metadata
from nnpm.format.manifest import MANIFEST_NAME, Manifest
from registry_server.storage.base import BlobStore

BLOCK = tarfile.BLOCKSIZE      # 512
RECORD = tarfile.RECORDSIZE    # 20 blocks: tarfile pads the end of an archive to a whole record


def _header(name: str, size: int) -> bytes:
    """The header block(s) tarfile writes for one member (PAX: an extended header first for long or non-ASCII names)."""
    return member_info(name, size).tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")


def _padding(size: int) -> bytes:
    return tarfile.NUL * (-size % BLOCK)


def stream(manifest: Manifest, store: BlobStore) -> tuple[int, Iterator[bytes]]:
    """(the archive's length in bytes, an iterator over its bytes); NotFoundError when a blob is missing.

    Every blob is checked to be stored with its size before the first byte is sent."""
    data = manifest.to_json()
    members = [(_header(MANIFEST_NAME, len(data)), len(data))]
    for f in manifest.files:
        if store.size(f.sha256) != f.size:
            raise NotFoundError(f"file {f.path!r} of {manifest.name} {manifest.version} is missing from the blob store",
                                hint="tell the registry's operator")
        members.append((_header(f.path, f.size), f.size))
    length = sum(len(header) + size + len(_padding(size)) for header, size in members) + 2 * BLOCK
    length += -length % RECORD
    return length, _chunks(manifest, store, data, [header for header, _ in members], length)


def _chunks(manifest: Manifest, store: BlobStore, data: bytes, headers: list[bytes], length: int) -> Iterator[bytes]:
    sent = 0
    first = headers[0] + data + _padding(len(data))
    yield first
    sent += len(first)
    for header, entry in zip(headers[1:], manifest.files):
        yield header
        got = 0
        for chunk in store.open_range(entry.sha256):
            got += len(chunk)
            yield chunk
        if got != entry.size:  # the store changed under us: end the answer short rather than send a lie
            raise IntegrityError(f"blob sha256:{entry.sha256} gave {got} bytes, not {entry.size}")
        sent += len(header) + got + len(_padding(got))
        if _padding(got):
            yield _padding(got)
    yield tarfile.NUL * (length - sent)  # two zero blocks, then zeros up to a whole record
