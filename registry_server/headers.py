"""Security headers on every answer: a Content-Security-Policy per kind of answer, nosniff, no framing, no referrer.

- HTML pages (the package list, model cards, 404s): scripts none at all, styles and images
  from the registry itself (README images may also be https: or data:), forms to the
  registry only, no <base>, no framing.
- /docs (Swagger UI): its script and styles from /docs-assets (or the CDN FastAPI names when
  swagger-ui-bundle is not installed), the one inline script allowed by its sha256 hash.
- Everything else (JSON, blobs, static files): `default-src 'none'; sandbox`, so a blob
  opened in a browser can never run as a page of the registry's origin.

Every answer also gets `X-Content-Type-Options: nosniff`, `X-Frame-Options: DENY` and
`Referrer-Policy: no-referrer`. Downloads that name their file (`?filename=` on a blob, the
`.nnpm` archive) say so with `content_disposition`, the name sanitised.
"""

from __future__ import annotations

import base64
import hashlib
import re
import unicodedata
from urllib.parse import quote

from starlette.datastructures import MutableHeaders

PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'")
OTHER_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
COMMON = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)


MAX_FILENAME = 200


def content_disposition(filename: str, fallback: str) -> str:
    """`attachment; filename="..."` (plus RFC 6266's `filename*` when the name is not ASCII) for a download.

    The name is cut to its last path component; control, format (bidi) and other invisible
    characters are dropped, quotes become `_`, leading dots and spaces go, and it is cut to
    200 characters. When nothing is left, `fallback` (a digest, a package file name) is used."""
    name = re.split(r"[/\\]", filename)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] not in "CZ" or ch == " ")
    name = name.replace('"', "_").lstrip(". ").rstrip(" ")[:MAX_FILENAME] or fallback
    ascii_name = "".join(ch if " " <= ch < "\x7f" else "_" for ch in name)
    header = f'attachment; filename="{ascii_name}"'
    if ascii_name != name:
        header += "; filename*=UTF-8''" + quote(name, safe="")
    return header


def docs_csp(page: str, cdn: str | None) -> str:
    """The policy for the Swagger UI page `page`: its inline scripts by hash, assets from here (or `cdn`)."""
    hashes = " ".join("'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
                      for body in _INLINE_SCRIPT.findall(page))
    extra = f" {cdn}" if cdn else ""
    return (f"default-src 'none'; script-src 'self' {hashes}{extra}; style-src 'self' 'unsafe-inline'{extra}; "
            f"img-src 'self' data:{' https://fastapi.tiangolo.com' if cdn else ''}; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class SecurityHeaders:
    """ASGI middleware adding the headers above to every HTTP answer (headers a route set itself are kept)."""

    def __init__(self, app, docs_policy: str) -> None:
        self.app = app
        self.docs_policy = docs_policy

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                html = headers.get("content-type", "").startswith("text/html")
                policy = self.docs_policy if path == "/docs" else PAGE_CSP if html else OTHER_CSP
                for name, value in {**COMMON, "content-security-policy": policy}.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
