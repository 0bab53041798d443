"""Errors carry their own data: each class's status, the wire form, and the client rebuilding the same error.

Also the CLI seam: an OSError is one `error:` line, never a traceback.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from cli import one_error_line, run_nnpm

from nnpm import errors as E
from nnpm.client.httperrors import SERVER_CODES, error_for_response


def _nnpm(home: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    """The one CLI runner (tests/cli.py), without its exit-0 check: these tests look at failures too."""
    return run_nnpm(home, *args, check=False, **kw)


URL = "http://registry.test"


def _over_the_wire(exc: E.NnpmError) -> E.NnpmError:
    """What a client makes of the answer a server sends for `exc`."""
    body = json.dumps(exc.to_wire()).encode()
    return error_for_response(exc.response_status(), httpx.Headers({"X-Error-Code": exc.code}), body, URL)


@pytest.mark.parametrize("cls", [c for c in E.all_error_classes() if c.code in SERVER_CODES],
                         ids=lambda c: c.__name__)
def test_every_server_error_comes_back_as_itself(cls: type[E.NnpmError]) -> None:
    exc = cls("it went wrong", hint="do this instead")
    back = _over_the_wire(exc)
    expected = E.error_for_code(cls.code) if cls is E.AuthError else cls
    assert type(back) is expected
    assert (back.hint, back.status) == (exc.hint, exc.response_status())
    if cls is E.RegistryError:  # a server failure says which server failed
        assert back.message == f"the registry at {URL} failed (500): it went wrong"
    else:
        assert back.message == exc.message


def test_fields_travel_and_the_message_is_not_prefixed_twice() -> None:
    exc = E.ManifestError("must be hex", file="manifest.json", key="files[0].sha256", hint="run nnpm pack")
    back = _over_the_wire(exc)
    assert type(back) is E.ManifestError
    assert back.message == "manifest.json: files[0].sha256: must be hex"
    assert (back.file, back.key, back.hint) == ("manifest.json", "files[0].sha256", "run nnpm pack")
    assert back.one_line() == exc.one_line()


def test_a_status_given_to_one_error_wins_over_its_class() -> None:
    assert E.ManifestError("graph says otherwise", status=422).response_status() == 422
    assert E.RegistryError("storage down", status=503).response_status() == 503
    assert _over_the_wire(E.ManifestError("x", status=422)).status == 422


def test_401_and_403_are_two_classes_under_one_parent() -> None:
    assert issubclass(E.UnauthenticatedError, E.AuthError) and issubclass(E.ForbiddenError, E.AuthError)
    assert E.UnauthenticatedError.http_status == 401 and E.ForbiddenError.http_status == 403
    assert E.UnauthenticatedError.code != E.ForbiddenError.code


def test_a_server_hint_is_the_only_hint() -> None:
    exc = E.ForbiddenError("'bob' is not an owner of 'tiny'", hint="ask an owner to add you: nnpm owner add tiny bob")
    back = _over_the_wire(exc)
    assert back.one_line().count("(") == 1 and "{" not in back.one_line()
    assert back.hint == "ask an owner to add you: nnpm owner add tiny bob"


def test_without_a_server_hint_the_client_gives_one() -> None:
    back = error_for_response(403, httpx.Headers(), json.dumps({"error": "forbidden", "detail": "no"}).encode(), URL)
    assert isinstance(back, E.ForbiddenError) and "nnpm owner add" in back.hint


def test_a_real_403_from_the_registry_names_the_command_once(tmp_path: Path, small_package) -> None:
    """Through create_app's error seam and the client's: one hint, filled in, no template braces."""
    from starlette.testclient import TestClient

    from nnpm.author.publish import publish
    from nnpm.client.api import RegistryClient
    from registry_server.app import create_app
    from registry_server.services.auth import add_user
    from registry_server.settings import ServerSettings

    settings = ServerSettings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings)) as http:
        alice, bob = add_user(settings.database_url, "alice"), add_user(settings.database_url, "bob")
        folder = small_package("tiny", "1.0.0")
        with RegistryClient(str(http.base_url), token=alice, transport=http._transport) as client:
            publish(folder, client, progress=False)
        with RegistryClient(str(http.base_url), token=bob, transport=http._transport) as client:
            with pytest.raises(E.ForbiddenError) as info:
                publish(small_package("tiny", "2.0.0"), client, progress=False)
    line = info.value.one_line()
    assert "nnpm owner add tiny bob" in line and line.count("(") == 1 and "{" not in line
    assert info.value.status == 403


def test_nnpm_home_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    line = one_error_line(_nnpm(home, "env", "create", "x"))
    assert str(home) in line


def test_pack_output_under_a_file_is_one_line(tmp_path: Path, small_package) -> None:
    folder = small_package("tiny", "1.0.0")
    (tmp_path / "afile").write_text("x")
    line = one_error_line(_nnpm(tmp_path / "home", "pack", str(folder), "-o", str(tmp_path / "afile" / "x.nnpm")))
    assert "afile" in line
    assert not list((tmp_path).glob("afile*/**"))


def test_verbose_shows_the_traceback_for_an_os_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    proc = _nnpm(home, "--verbose", "env", "create", "x")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and proc.stderr.rstrip().splitlines()[-1].startswith("error:")
