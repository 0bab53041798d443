"""Every size and count limit of the package format, in one place for client and server.

A package that `nnpm pack` accepts is one a default registry accepts, and an archive or a
registry answer is refused by the client at the same bounds. Operators may lower or raise
the server's own caps (blob size, manifest size) with options; these are the defaults.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024**2
GIB = 1024**3

# names, versions and text
MAX_NAME_LENGTH = 100            # package names (PEP 508), stored in VARCHAR(100)
MAX_VERSION_LENGTH = 100         # normalised PEP 440 version strings
MAX_TEXT_LENGTH = 10_000         # description and other free text in nnpm.toml
MAX_LIST_ITEMS = 100             # tags, authors, include
MAX_PATH_LENGTH = 255            # one path inside a package
MAX_USER_NAME_LENGTH = 64

# files and manifests
MAX_FILES = 10_000               # files in one package
MAX_NAMES_PER_BLOB = 8           # paths in one package that may hold the same bytes
MAX_FILE_SIZE = 64 * GIB         # one file; the graph itself obeys MAX_PROTO_SIZE
MAX_PROTO_SIZE = 2 * GIB - 1     # protobuf cannot parse a message of 2 GiB or more
MAX_MANIFEST_BYTES = 4 * MIB     # manifest.json, in an archive or a publish
MAX_JSON_DEPTH = 32              # nesting of any JSON body a registry parses
MAX_README_BYTES = 1 * MIB       # README rendered on a model card
MAX_LABELS_BYTES = 16 * MIB      # one labels file (one class name per line)
MAX_SIGNATURE_PORTS = 10_000     # inputs or outputs of one graph

# transfers
MAX_BLOB_BYTES = 8 * GIB         # one uploaded file (a registry's default cap)
MAX_PACKUMENT_BYTES = 64 * MIB   # a packument or other JSON answer the client reads
MAX_ERROR_BODY_BYTES = 64 * KIB  # an error answer the client reads

# air-gapped bundles (nnpm/format/bundle.py): the metadata is held in memory, the blobs are streamed
MAX_BUNDLE_JSON_BYTES = 16 * MIB      # bundle.json
MAX_TUF_METADATA_BYTES = 16 * MIB     # one TUF metadata file (a bin lists many packuments)
MAX_BUNDLE_METADATA_BYTES = 1 * GIB   # bundle.json, TUF files and packuments together
MAX_BUNDLE_MEMBERS = 1_000_000        # members of one bundle
MAX_BUNDLE_ROOTS = 1_000              # root versions in one bundle's chain
MAX_BUNDLE_BYTES = 16 * 1024 * GIB    # the members' bytes together (a blob obeys MAX_FILE_SIZE)
