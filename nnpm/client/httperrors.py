"""One seam from HTTP to nnpm errors: answers by their `error` code (else status), transport failures by class.

The server sends `{"error": CODE, "detail": ..., "hint": ..., "fields": {...}}` (nnpm/errors.py,
docs/protocol.md); the client rebuilds the class CODE names, with the server's message,
hint and fields. tests/test_client.py checks both maps are complete.
"""

from __future__ import annotations

import json
import re

import httpx

from nnpm.errors import (
    AuthError,
    BusyError,
    ConflictError,
    ForbiddenError,
    NnpmError,
    NotFoundError,
    RegistryError,
    TooLargeError,
    UnauthenticatedError,
    error_for_code,
)

# Codes a server may send back, mapped to the same class (docs/protocol.md, "Conventions").
SERVER_CODES = frozenset({"invalid_manifest", "invalid_spec", "invalid_model", "unsafe_package", "invalid_pipeline",
                          "integrity_error", "config_error", "unauthorized", "forbidden", "not_found", "conflict",
                          "too_large", "busy", "registry_error", "bad_signature"})
# Codes that describe this machine (envs, inputs, resolution); a server sending one is mapped by status.
LOCAL_CODES = frozenset({"nnpm_error", "resolution_impossible", "invalid_input", "no_labels",
                         "unmet_requirement", "not_installed", "environment_error", "untrusted_index"})
STATUS_CLASSES: dict[int, type[RegistryError]] = {401: UnauthenticatedError, 403: ForbiddenError, 404: NotFoundError,
                                                  409: ConflictError, 413: TooLargeError, 429: BusyError}

_NET = "check the URL and your network, and that the registry is running"
_RETRY = "the connection broke; try again"
# Every httpx.RequestError class → (reason, hint). Looked up along the MRO; tests check it is complete.
REQUEST_ERRORS: dict[type[httpx.RequestError], tuple[str, str]] = {
    httpx.RequestError: ("request failed", _NET),
    httpx.TransportError: ("transport failed", _NET),
    httpx.TimeoutException: ("timed out", _NET),
    httpx.ConnectTimeout: ("connecting timed out", _NET),
    httpx.ReadTimeout: ("no answer in time", "the registry is slow or overloaded; try again"),
    httpx.WriteTimeout: ("sending timed out", "the registry is slow or overloaded; try again"),
    httpx.PoolTimeout: ("no free connection in time", "too many transfers at once; try again"),
    httpx.NetworkError: ("network error", _NET),
    httpx.ConnectError: ("connection failed", _NET),
    httpx.ReadError: ("connection broke while reading", _RETRY),
    httpx.WriteError: ("connection broke while sending", _RETRY),
    httpx.CloseError: ("closing the connection failed", _RETRY),
    httpx.ProxyError: ("the proxy failed", "check HTTP_PROXY / HTTPS_PROXY"),
    httpx.UnsupportedProtocol: ("unsupported URL", "registry URLs start with http:// or https://"),
    httpx.ProtocolError: ("HTTP protocol error", _RETRY),
    httpx.LocalProtocolError: ("the request broke the HTTP protocol", _RETRY),
    httpx.RemoteProtocolError: ("the registry broke the HTTP protocol", _RETRY),
    httpx.DecodingError: ("the answer could not be decoded", "the registry or a proxy sent a corrupt body"),
    httpx.TooManyRedirects: ("too many redirects", "check the registry URL"),
}


def _clean(text: str, limit: int = 300) -> str:
    """One printable line, at most `limit` characters."""
    text = re.sub(r"\s+", " ", re.sub(r"[\x00-\x1f\x7f]", " ", text)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_url(url: str) -> str:
    """The URL without any user:password@ part."""
    return re.sub(r"^(https?://)[^/@]*@", r"\1", url)


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # FastAPI validation errors: [{"msg": ...}, ...]
        msgs = [d.get("msg") for d in value if isinstance(d, dict) and isinstance(d.get("msg"), str)]
        return "; ".join(msgs) or None
    return None


def _default_hint(status: int, where: str) -> str | None:
    if status == 401:
        return f"log in with 'nnpm login --registry {where}' or set NNPM_TOKEN"
    if status == 403:
        return "only a package's owners may change it; an owner can add you with 'nnpm owner add NAME USER'"
    if status == 429:
        return "the registry is busy; try again in a little while"
    if status >= 500:
        return "the registry had a problem; try again later or tell its operator"
    return None


def error_for_response(status: int, headers: httpx.Headers, body: bytes, url: str) -> NnpmError:
    """The nnpm error an HTTP error answer stands for: its code's class with its message, hint and fields."""
    code = detail = hint = None
    fields: dict = {}
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        code = data.get("error") if isinstance(data.get("error"), str) else None
        detail, hint = _text(data.get("detail")), _text(data.get("hint"))
        fields = data.get("fields") if isinstance(data.get("fields"), dict) else {}
    code = code or headers.get("x-error-code")
    cls = (error_for_code(code) if code in SERVER_CODES else None) or STATUS_CLASSES.get(status, RegistryError)
    if issubclass(cls, AuthError) and status in (401, 403):  # which of the two the status says
        cls = STATUS_CLASSES[status]
    where = safe_url(url)
    if not detail:
        message = f"the registry at {where} answered {status} {httpx.codes.get_reason_phrase(status)}".rstrip()
    elif cls is RegistryError and status >= 500:
        message = f"the registry at {where} failed ({status}): {_clean(detail)}"
    else:
        message = _clean(detail)
    hint = _clean(hint) if hint else _default_hint(status, where)
    safe_fields = {k: v for k, v in fields.items() if isinstance(v, (str, int, float, list, type(None)))}
    err = cls.from_wire(message, hint=hint, fields=safe_fields, status=status)
    if isinstance(err, BusyError):
        err.retry_after = _seconds(headers.get("retry-after"))
    return err


def _seconds(value: str | None) -> float | None:
    """A Retry-After given in seconds (the HTTP-date form is read as unknown)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def error_for_request_error(exc: httpx.RequestError, url: str) -> RegistryError:
    """A RegistryError for a transport failure, naming the registry URL."""
    reason, hint = next(REQUEST_ERRORS[c] for c in type(exc).__mro__ if c in REQUEST_ERRORS)
    verb = "bad answer from" if isinstance(exc, (httpx.DecodingError, httpx.TooManyRedirects)) else "cannot reach"
    extra = _clean(str(exc), 200)
    return RegistryError(f"{verb} the registry at {safe_url(url)}: {reason}" + (f" ({extra})" if extra else ""),
                         hint=hint)
