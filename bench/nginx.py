"""nginx as a static peer: the registry's own blob files and a copy of a packument, served as files.

`StaticNginx(blobs_dir, packuments, folder)` writes an nginx.conf into `folder` (pid, logs
and temp paths all inside it, so no root and no /var/log), starts `nginx -p FOLDER -c CONF
-e ERROR_LOG -g 'daemon off;'` as a child process on a free 127.0.0.1 port, waits until it
answers, and stops it (and any worker left behind) on `stop()` / leaving the `with`.

The URLs are the registry's: `/api/v1/blobs/sha256:<hex>` is the file
`<blobs_dir>/sha256/<hex[:2]>/<hex>` (the layout of registry_server/storage/directory.py)
and `/api/v1/packages/<name>` the JSON file given for it.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
from pathlib import Path

from bench.common import answers, free_port, stop_process

# One worker, like the registry's one uvicorn worker process: the same process count, and on a
# 2-core machine the load generator needs the other core. sendfile: the kernel copies file to
# socket, nginx's point as a static server. The access log stays on, as the registry's is.
CONF = """\
{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    types {{ }}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{port};
        location ~ "^/api/v1/blobs/sha256:([0-9a-f]{{2}})([0-9a-f]{{62}})$" {{
            default_type application/octet-stream;
            alias {blobs}/sha256/$1/$1$2;
        }}
{packuments}
    }}
}}
"""
PACKUMENT = """\
        location = /api/v1/packages/{name} {{
            default_type application/json;
            alias {path};
        }}
"""
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def nginx_binary() -> str | None:
    """The nginx executable (PATH, else the Debian package's /usr/sbin/nginx), or None."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def nginx_version(binary: str) -> str:
    """'nginx/1.22.1' as `nginx -v` says it (on stderr)."""
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    return (out.stderr or out.stdout).strip().removeprefix("nginx version: ")


class StaticNginx:
    """A child nginx serving blob files and packument copies under the registry's URLs."""

    def __init__(self, binary: str, blobs_dir: Path, packuments: dict[str, Path], folder: Path) -> None:
        for name in packuments:
            if not _NAME.match(name):  # it goes into the config verbatim
                raise ValueError(f"unexpected package name {name!r}")
        self.binary, self.folder = binary, folder
        self.blobs_dir, self.packuments = Path(blobs_dir).resolve(), packuments
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.folder / "nginx.conf"

    def write_conf(self) -> Path:
        """The nginx.conf for this server; returns its path."""
        (self.folder / "tmp").mkdir(parents=True, exist_ok=True)
        locations = "".join(PACKUMENT.format(name=name, path=Path(path).resolve())
                            for name, path in self.packuments.items())
        self.conf.write_text(CONF.format(user=_user_line(self.blobs_dir), prefix=self.folder.resolve(),
                                         port=self.port, blobs=self.blobs_dir, packuments=locations))
        return self.conf

    def start(self, timeout: float = 20) -> "StaticNginx":
        """Start nginx in the foreground and wait until a packument URL answers 200 (3 tries, a new port each)."""
        for _ in range(3):  # the free port may be taken before nginx binds it
            self.write_conf()
            with open(self.folder / "stderr.log", "ab") as log:
                self.proc = subprocess.Popen(
                    [self.binary, "-p", str(self.folder), "-c", str(self.conf), "-e", str(self.folder / "error.log"),
                     "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if self._wait_ready(timeout):
                return self
            self.stop()
            self.port = free_port()
        raise RuntimeError("nginx did not start:\n" + self._logs())

    def _wait_ready(self, timeout: float) -> bool:
        """Whether the first packument URL answered 200 before nginx exited or `timeout` seconds passed."""
        probe = f"{self.url}/api/v1/packages/{next(iter(self.packuments))}"
        return self.proc is not None and answers(self.proc, probe, timeout)

    def stop(self) -> None:
        """SIGTERM the master (a fast shutdown: it stops its workers), then make sure no worker is left."""
        if self.proc is None:
            return
        workers = _children(self.proc.pid) if self.proc.poll() is None else []
        stop_process(self.proc, grace=10)
        for pid in workers:  # only if the master died before its workers (it was killed)
            if _is_nginx(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def pids(self) -> list[int]:
        """The master's pid and its workers'."""
        return [self.proc.pid, *_children(self.proc.pid)] if self.proc is not None else []

    def _logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in
                         (self.folder / "stderr.log", self.folder / "error.log") if p.exists())

    def __enter__(self) -> "StaticNginx":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _user_line(blobs_dir: Path) -> str:
    """`user OWNER GROUP;` when running as root, else nothing (nginx ignores it then)."""
    if os.geteuid() != 0:
        return ""
    # Started as root, nginx's workers would drop to `nobody`, who cannot enter the bench's
    # 0700 temp folders: they run as the owner of the blob files instead.
    st = blobs_dir.stat()
    return f"user {pwd.getpwuid(st.st_uid).pw_name} {grp.getgrgid(st.st_gid).gr_name};\n"


def _children(pid: int) -> list[int]:
    """The child pids of a process (its nginx workers), from /proc."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _is_nginx(pid: int) -> bool:
    """Whether pid is still an nginx process (not a reused pid)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx")
    except OSError:
        return False
