"""TLS for registry connections: a verifying context that reads its CA bundle only when a TLS connection is made."""

from __future__ import annotations

import os
import ssl
import threading


class LazyCAContext(ssl.SSLContext):
    """A verifying TLS context, as httpx makes by default, that reads its CA bundle on first use.

    Reading certifi's bundle costs ~20-40 ms per process; talking to an http:// registry never
    needs it. SSL_CERT_FILE / SSL_CERT_DIR are honoured as httpx does."""

    _lock = threading.Lock()
    _loaded = False

    def __new__(cls) -> "LazyCAContext":
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname

    def _load(self) -> None:
        with self._lock:
            if not self._loaded:
                if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
                    self.load_verify_locations(cafile=os.environ.get("SSL_CERT_FILE"),
                                               capath=os.environ.get("SSL_CERT_DIR"))
                else:
                    import certifi

                    self.load_verify_locations(cafile=certifi.where())
                self._loaded = True

    def wrap_socket(self, *args, **kwargs):
        self._load()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args, **kwargs):
        self._load()
        return super().wrap_bio(*args, **kwargs)
