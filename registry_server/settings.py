"""Server settings: names and defaults in one place, resolved once and handed to `create_app`.

Every field can be set on the command line or from the environment (registry_server/options.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nnpm.format.limits import GIB, MAX_BLOB_BYTES, MAX_JSON_DEPTH, MAX_MANIFEST_BYTES, MAX_README_BYTES

DB_NAME = "registry.db"


@dataclass(frozen=True)
class ServerSettings:
    """Where the registry keeps its data and the limits it enforces."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8765
    database_url: str = ""                 # "" means sqlite:///<data_dir>/registry.db
    storage_url: str = ""                  # "" means a folder in data_dir; file:///PATH or s3://BUCKET/PREFIX
    s3_endpoint: str = ""                  # "" means boto3's own (AWS_ENDPOINT_URL, else AWS itself)
    redirect_downloads: bool = False       # GET of a blob answers 307 to a presigned URL (s3:// only)
    accel_redirect: str = ""               # "" off; a front proxy's internal prefix: GETs answer X-Accel-Redirect
    max_blob_size: int = MAX_BLOB_BYTES    # one uploaded file
    max_manifest_size: int = MAX_MANIFEST_BYTES   # one manifest.json body
    validate_timeout: float = 60.0         # seconds of wall clock for the model-reading worker
    validate_memory: int = 2 * GIB         # address space (RLIMIT_AS) of that worker
    validate_workers: int = 2              # model-reading workers running at once (per process), kept started
    validate_worker_jobs: int = 1          # checks one pre-started worker serves before it is replaced
    publish_queue: int = 16                # publishes waiting for a worker; more are answered 429
    validate_scratch: int = 64 * GIB       # bytes one publish may copy into its scratch folder
    measure_budget: float = 30.0           # more seconds of wall clock (and CPU) for the worker to measure a publish
    measure_time: float = 2.0              # seconds of timed runs per variant (at least 5 runs)
    no_measure: bool = False               # True: no self-test run and nothing measured at publish
    readme_timeout: float = 10.0           # seconds to render a README to HTML, once, at publish
    body_timeout: float = 60.0             # seconds an upload may go without sending a byte (408)
    header_timeout: float = 30.0           # seconds a connection has to send its request headers
    upload_quota: int = 0                  # bytes of blobs one user may have uploaded; 0 = unlimited
    max_readme_size: int = MAX_README_BYTES       # README bytes rendered on the model card
    max_json_depth: int = MAX_JSON_DEPTH   # nesting of any JSON body
    tuf_online_key: Path | None = None     # None means <data_dir>/tuf-online.key (services/tuf_keys.py)
    tuf_timestamp_expiry: int = 86400      # seconds a signed timestamp lives (tests shorten it)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / DB_NAME}")

    @property
    def measure(self) -> bool:
        """Whether publishes are self-tested and measured by the validation worker."""
        return not self.no_measure

    @property
    def tmp_dir(self) -> Path:
        """Scratch space on the same file system as the blobs (uploads, worker folders)."""
        return self.data_dir / "tmp"

    @property
    def tuf_key_path(self) -> Path:
        """The online key that signs the TUF index (targets, bins, snapshot, timestamp)."""
        return Path(self.tuf_online_key).expanduser() if self.tuf_online_key else self.data_dir / "tuf-online.key"

    @property
    def blobs_dir(self) -> Path:
        """Root of the default directory blob store (when storage_url is empty)."""
        return self.data_dir / "blobs"
