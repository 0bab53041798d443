"""nginx (Debian's package) as the front proxy docs/deploy.md describes, for tests: `NginxFront`.

The configuration is the document's, with this test's paths: everything proxied to one
registry, and an `internal` location over its blobs folder that `X-Accel-Redirect` answers
land in. nginx runs in the foreground as a child (its prefix, pid, logs and temp folders
in a folder of the test's), on a free port of 127.0.0.1. Without nginx the test skips,
except with CI=true, where it fails: CI must run it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest
from registry_proc import answers, free_port

CONF = """\
{user}worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    log_format nnpm '$status $uri $body_bytes_sent';
    access_log {root}/access.log nnpm;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    upstream nnpm_registry {{ server {upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        location / {{
            proxy_pass http://nnpm_registry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_request_buffering off;
            proxy_buffering off;
        }}
        location {prefix} {{
            internal;
            alias {blobs}/;
            etag off;
            add_header ETag $upstream_http_etag;
            add_header Docker-Content-Digest $upstream_http_docker_content_digest;
            add_header X-Content-Type-Options nosniff;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    """Debian's nginx (in /usr/sbin, often not on a user's PATH); a skip, or a failure under CI=true, without it."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("nginx is not installed, and CI=true: .ci/run installs Debian's nginx")
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    return found


class NginxFront:
    """nginx on 127.0.0.1 in front of a registry at `upstream` (a URL), `prefix` aliasing `blobs`."""

    def __init__(self, root: Path, *, upstream: str, blobs: Path, prefix: str) -> None:
        self.root = root
        self.port = free_port()
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        self.conf = root / "nginx.conf"
        # Started by root, nginx's workers would run as nobody and could not read the test's 0700 folders.
        user = f"user {pwd.getpwuid(os.getuid()).pw_name};\n" if os.getuid() == 0 else ""
        self.conf.write_text(CONF.format(user=user, root=root, port=self.port, upstream=upstream.split("://", 1)[1],
                                         prefix=prefix, blobs=blobs))
        self.binary = nginx_binary()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "NginxFront":
        self.proc = subprocess.Popen([self.binary, "-p", str(self.root), "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        if answers(self.proc, self.url + "/api/v1/health", 20):
            return self
        self.__exit__()
        raise AssertionError(f"nginx did not start: {(self.root / 'error.log').read_text(errors='replace')[-2000:]}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()   # SIGTERM: nginx's fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def blob_requests(self, prefix: str) -> list[tuple[int, str, int]]:
        """(status, the URI nginx finally served, body bytes) of every request it answered from `prefix`."""
        out = []
        for line in (self.root / "access.log").read_text().splitlines():
            status, uri, sent = line.split(" ")
            if uri.startswith(prefix):
                out.append((int(status), uri, int(sent)))
        return out
