"""The registry client against odd and hostile servers, through injected transports: error answers and
transport failures become the right nnpm errors (the protocol calls: test_client_protocol.py)."""

from __future__ import annotations

import json

import httpx
import pytest

from nnpm import errors as E
from nnpm.client.api import RegistryClient
from nnpm.client.httperrors import (
    LOCAL_CODES,
    REQUEST_ERRORS,
    SERVER_CODES,
    STATUS_CLASSES,
    error_for_request_error,
    error_for_response,
)

URL = "http://registry.test"
TOKEN = "nnpm_s3cr3t-token-value"
DIGEST = "ab" * 32



def _client(handler, **kw) -> RegistryClient:
    return RegistryClient(URL, token=TOKEN, transport=httpx.MockTransport(handler), **kw)


def _subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _subclasses(sub)
    return out


def _error(status: int, code: str | None, detail: str):
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"detail": detail} | ({"error": code} if code else {})
        return httpx.Response(status, json=body, headers={"X-Error-Code": code} if code else {})
    return handler


# -- the error map --------------------------------------------------------------------------

def test_every_nnpm_error_code_is_classified_as_server_or_local() -> None:
    codes = {cls.code for cls in _subclasses(E.NnpmError)} | {E.NnpmError.code}
    assert SERVER_CODES | LOCAL_CODES == codes
    assert not SERVER_CODES & LOCAL_CODES


@pytest.mark.parametrize("cls", sorted(_subclasses(E.NnpmError) | {E.NnpmError}, key=lambda c: (c.code, c.__name__)))
def test_every_error_code_maps_back_as_intended(cls: type[E.NnpmError]) -> None:
    err = error_for_response(418, httpx.Headers({"X-Error-Code": cls.code}),
                             json.dumps({"error": cls.code, "detail": "it went wrong"}).encode(), URL)
    if cls.code in SERVER_CODES:
        assert type(err) is E.error_for_code(cls.code)   # AuthError's code names its 401 leaf
        assert isinstance(err, cls) or issubclass(cls, E.AuthError)
        assert err.message == "it went wrong"
    else:  # a server cannot claim a client-side state; the status decides
        assert type(err) is E.RegistryError
    assert err.status == 418


def test_every_httpx_request_error_is_mapped_explicitly() -> None:
    for cls in _subclasses(httpx.RequestError) | {httpx.RequestError}:
        assert cls in REQUEST_ERRORS, f"{cls.__name__} has no entry in nnpm.client.httperrors.REQUEST_ERRORS"
        err = error_for_request_error(cls("boom"), URL)
        assert type(err) is E.RegistryError
        assert URL in err.message and err.hint


@pytest.mark.parametrize("status,cls", [(401, E.UnauthenticatedError), (403, E.ForbiddenError),
                                        (404, E.NotFoundError), (409, E.ConflictError), (413, E.TooLargeError),
                                        (429, E.BusyError), (400, E.RegistryError),
                                        (418, E.RegistryError), (502, E.RegistryError)])
def test_status_decides_when_there_is_no_code(status: int, cls: type) -> None:
    err = error_for_response(status, httpx.Headers(), b"", URL)
    assert type(err) is cls and err.status == status
    assert STATUS_CLASSES.get(status, E.RegistryError) is cls


def test_error_code_from_header_when_body_is_empty() -> None:
    err = error_for_response(400, httpx.Headers({"X-Error-Code": "integrity_error"}), b"", URL)
    assert isinstance(err, E.IntegrityError)


# -- error answers ----------------------------------------------------------------------------

def test_error_json_raises_the_named_class_with_detail() -> None:
    with _client(_error(409, "conflict", "resnet18 1.0.0 exists with other content")) as c:
        with pytest.raises(E.ConflictError, match="exists with other content") as info:
            c.version("resnet18", "1.0.0")
    assert info.value.status == 409


def test_manifest_error_from_server_is_a_manifest_error() -> None:
    with _client(_error(400, "invalid_manifest", "files[0].sha256: must be hex")) as c:
        with pytest.raises(E.ManifestError, match="must be hex"):
            c.whoami()


@pytest.mark.parametrize("code", ["forbidden", "unauthorized"])  # "unauthorized": a server before 403 had a code
def test_403_is_forbidden_with_owner_hint(code: str) -> None:
    with _client(_error(403, code, "alice does not own resnet18")) as c:
        with pytest.raises(E.ForbiddenError) as info:
            c.yank("resnet18", "1.0.0", "broken")
    assert info.value.status == 403 and "owner" in info.value.hint


def test_500_with_html_is_registry_error_with_status() -> None:
    html = "<html><body><h1>Internal Server Error</h1>" + "x" * 10_000 + "</body></html>"
    with _client(lambda r: httpx.Response(500, text=html, headers={"Content-Type": "text/html"})) as c:
        with pytest.raises(E.RegistryError) as info:
            c.health()
    assert type(info.value) is E.RegistryError and info.value.status == 500
    assert "500" in info.value.message and "<html>" not in info.value.message


def test_odd_error_bodies_do_not_break_the_mapping() -> None:
    for body in (b"[1, 2]", b"{", json.dumps({"error": 5, "detail": {"x": 1}}).encode(), b"\xff\xfe"):
        with _client(lambda r, body=body: httpx.Response(404, content=body)) as c:
            with pytest.raises(E.NotFoundError):
                c.version("x", "1")


def test_detail_is_one_short_line() -> None:
    with _client(_error(409, "conflict", "line one\nline two\x1b[31m" + "y" * 5000)) as c:
        with pytest.raises(E.ConflictError) as info:
            c.version("x", "1")
    assert "\n" not in info.value.message and "\x1b" not in info.value.message
    assert len(info.value.message) <= 300


def test_token_echoed_by_server_is_redacted() -> None:
    with _client(_error(401, "unauthorized", f"token {TOKEN} is unknown")) as c:
        with pytest.raises(E.AuthError) as info:
            c.whoami()
    assert TOKEN not in str(info.value) and TOKEN not in info.value.one_line()


def test_malformed_json_answer_is_registry_error() -> None:
    with _client(lambda r: httpx.Response(200, content=b"<html>surprise</html>")) as c:
        with pytest.raises(E.RegistryError, match="malformed JSON"):
            c.version("x", "1")


def test_oversized_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("nnpm.client.api.MAX_JSON", 1000)
    with _client(lambda r: httpx.Response(200, content=b"[" + b"1," * 2000 + b"1]")) as c:
        with pytest.raises(E.RegistryError, match="more than 1000 bytes"):
            c.health()


# -- transport errors --------------------------------------------------------------------------

@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout,
                                 httpx.RemoteProtocolError, httpx.ReadError])
def test_transport_error_names_the_url_not_the_token(exc: type[httpx.RequestError]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc(f"failed for Bearer {TOKEN}", request=request)

    with _client(handler) as c:
        with pytest.raises(E.RegistryError) as info:
            c.whoami()
    assert info.value.message.startswith(f"cannot reach the registry at {URL}")
    assert TOKEN not in info.value.one_line() and info.value.hint


def test_real_connection_refused_is_registry_error() -> None:
    with RegistryClient("http://127.0.0.1:9", token=TOKEN, timeout=2) as c:
        with pytest.raises(E.RegistryError, match="cannot reach the registry at http://127.0.0.1:9") as info:
            c.packument("resnet18")
    assert TOKEN not in info.value.one_line()


def test_token_never_in_repr() -> None:
    c = _client(lambda r: httpx.Response(200))
    assert TOKEN not in repr(c) and TOKEN not in repr(vars(c))


def test_invalid_registry_url_is_config_error() -> None:
    with pytest.raises(E.ConfigError):
        RegistryClient("ftp://x")
