"""registry_server/options.py: every server option defined once, as a flag and an NNPM_REGISTRY_* variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnpm.errors import ConfigError
from registry_server.options import OPTIONS, build_parser, settings_from


def _settings(argv: list[str], command: str = "serve"):
    return settings_from(build_parser(command, "test").parse_args(argv), command)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("NNPM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NNPM_HOME", str(tmp_path / "home"))


def test_defaults(tmp_path: Path) -> None:
    s = _settings([])
    assert s.data_dir == (tmp_path / "home" / "registry").resolve() and s.port == 8765
    assert s.database_url == f"sqlite:///{s.data_dir / 'registry.db'}"


def test_every_option_comes_from_its_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"data": str(tmp_path / "d"), "database_url": "sqlite:////tmp/x.db", "host": "0.0.0.0", "port": "9000",
              "storage_url": "file:///srv/blobs", "s3_endpoint": "http://127.0.0.1:9", "redirect_downloads": "1",
              "max_blob_size": "1024", "max_manifest_size": "2048", "validate_timeout": "7.5",
              "validate_memory": "123456789", "validate_workers": "3", "publish_queue": "5",
              "validate_scratch": "4096", "readme_timeout": "2.5", "body_timeout": "11", "header_timeout": "12",
              "upload_quota": "999", "validate_worker_jobs": "4", "measure_budget": "9.5", "measure_time": "0.5", "no_measure": "1",
              "tuf_online_key": "/keys/online.key", "tuf_timestamp_expiry": "60", "accel_redirect": "/_blobs/"}
    assert {o.field for o in OPTIONS} == set(values)
    for opt in OPTIONS:
        monkeypatch.setenv(opt.env, values[opt.field])
    s = _settings([])
    assert (s.data_dir, s.database_url, s.host, s.port) == ((tmp_path / "d").resolve(), "sqlite:////tmp/x.db",
                                                            "0.0.0.0", 9000)
    assert (s.storage_url, s.s3_endpoint, s.redirect_downloads) == ("file:///srv/blobs", "http://127.0.0.1:9", True)
    assert (s.max_blob_size, s.max_manifest_size, s.validate_timeout, s.validate_memory) == (1024, 2048, 7.5, 123456789)
    assert (s.validate_workers, s.publish_queue, s.validate_scratch, s.readme_timeout) == (3, 5, 4096, 2.5)
    assert (s.body_timeout, s.header_timeout, s.upload_quota, s.validate_worker_jobs) == (11.0, 12.0, 999, 4)
    assert (s.measure_budget, s.measure_time, s.no_measure, s.measure) == (9.5, 0.5, True, False)
    assert (s.tuf_key_path, s.tuf_timestamp_expiry, s.accel_redirect) == (Path("/keys/online.key"), 60, "/_blobs/")


def test_a_flag_wins_over_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNPM_REGISTRY_PORT", "9000")
    assert _settings(["--port", "9001"]).port == 9001


@pytest.mark.parametrize("name,value,words", [("NNPM_REGISTRY_PORT", "lots", "NNPM_REGISTRY_PORT='lots'"),
                                             ("NNPM_REGISTRY_REDIRECT_DOWNLOADS", "maybe", "yes/no"),
                                             ("NNPM_REGISTRY_PORT", "70000", "between 1 and 65535")])
def test_a_bad_variable_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        _settings([])


def test_user_add_takes_the_database_options_and_their_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNPM_REGISTRY_DATABASE_URL", "postgresql://db/x")
    parser = build_parser("user", "nnpm registry user add")
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"}
    assert flags == {"--data", "--database-url"}
    assert settings_from(parser.parse_args([]), "user").database_url == "postgresql://db/x"


def _run(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_both_commands_show_the_same_options() -> None:
    a = _run("-m", "registry_server", "--help")
    b = _run("-m", "nnpm", "registry", "serve", "--help")
    assert a.returncode == b.returncode == 0
    body = lambda text: text.split("options:", 1)[1]  # noqa: E731 - the part after the usage line
    assert body(a.stdout) == body(b.stdout)
    for opt in OPTIONS:
        assert opt.flag in a.stdout and opt.env in a.stdout


def test_user_add_and_serve_read_the_same_database_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNPM_")}
    env.update(NNPM_HOME=str(tmp_path / "home"), NNPM_REGISTRY_DATABASE_URL=url)
    proc = subprocess.run([sys.executable, "-m", "nnpm", "registry", "user", "add", "alice"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip().splitlines()[-1]
    from registry_server.db.engine import make_engine, session_factory
    from registry_server.services.auth import user_for_token

    engine = make_engine(url)
    try:
        with session_factory(engine)() as session:
            assert user_for_token(session, token).name == "alice"
    finally:
        engine.dispose()
    assert not (tmp_path / "home" / "registry" / "registry.db").exists()
