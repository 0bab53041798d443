"""Where nnpm keeps things and which registry it talks to; resolved once, passed in.

NNPM_HOME (default: the platform's user data dir) holds:
    config.toml      registry URL and tokens per registry, sign, require-signatures (mode 0600)
    keys/            publisher signing keys (see nnpm.author.keys)
    store/v1/...     content-addressed blobs (see nnpm.install.store)
    envs/<name>/     environments (see nnpm.install.env)
    cache/           packuments with their ETags
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from nnpm.errors import ConfigError
from nnpm.fsutil import atomic_write

DEFAULT_ENV = "default"
CONFIG_NAME = "config.toml"
TRUST_NAME = "trust"


def home_dir() -> Path:
    """NNPM_HOME, or the platform's user data dir for nnpm."""
    if os.environ.get("NNPM_HOME"):
        return Path(os.environ["NNPM_HOME"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("nnpm", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Everything the client needs to know about where it runs."""

    home: Path
    env: str
    registry: str | None
    token: str | None
    env_explicit: bool = False     # named by an argument (--env, env=): wins over a project
    index: str | None = None       # oci://HOST/NAMESPACE/: dependencies resolve from OCI instead of the registry
    sign: bool = False             # `nnpm publish` signs with the default key (docs/trust.md)
    require_signatures: bool = False   # installs refuse packages without a verified publisher signature

    @property
    def store_dir(self) -> Path:
        """Root of the content-addressed store."""
        return self.home / "store"

    @property
    def envs_dir(self) -> Path:
        """Folder holding every environment."""
        return self.home / "envs"

    @property
    def trust_dir(self) -> Path:
        """Pinned roots of registries' signed indexes, with the metadata verified since (nnpm/client/trusted_index.py)."""
        return self.home / TRUST_NAME

    @property
    def cache_dir(self) -> Path:
        """Metadata cache (packuments)."""
        return self.home / "cache"

    def require_registry(self) -> str:
        """The registry URL or a ConfigError saying how to set one."""
        if not self.registry:
            raise ConfigError("no registry configured",
                              hint="pass --registry URL, set NNPM_REGISTRY, or run 'nnpm login --registry URL --token T'")
        return self.registry


def read_config(home: Path) -> dict:
    """The parsed config.toml, or {} when there is none."""
    path = home / CONFIG_NAME
    if not path.exists():
        return {}
    import tomllib  # only with a config file: most loads have none, and tomllib costs ~3 ms

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}", hint="fix or delete the file") from None


def normalise_url(url: str) -> str:
    """Registry URLs compare without a trailing slash."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"registry URL {url!r} must start with http:// or https://")
    return url.rstrip("/")


def load_settings(*, env: str | None = None, registry: str | None = None, token: str | None = None) -> Settings:
    """Resolve settings from arguments, then NNPM_* variables, then config.toml."""
    home = home_dir()
    config = read_config(home)
    url = registry or os.environ.get("NNPM_REGISTRY") or config.get("registry")
    url = normalise_url(url) if url else None
    tok = token or os.environ.get("NNPM_TOKEN") or (config.get("tokens", {}).get(url) if url else None)
    env_name = env or os.environ.get("NNPM_ENV") or DEFAULT_ENV
    index = os.environ.get("NNPM_INDEX") or config.get("index") or None
    return Settings(home=home, env=env_name, registry=url, token=tok, env_explicit=env is not None,
                    index=index if isinstance(index, str) else None, sign=_flag("NNPM_SIGN", config.get("sign")),
                    require_signatures=_flag("NNPM_REQUIRE_SIGNATURES", config.get("require-signatures")))


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def parse_bool(text: str, what: str) -> bool:
    """'true'/'false' (1/0, yes/no, on/off) as a bool; ConfigError naming `what` otherwise."""
    if text.strip().lower() in _TRUE + _FALSE:
        return text.strip().lower() in _TRUE
    raise ConfigError(f"{what} must be true or false, not {text[:40]!r}")


def _flag(variable: str, configured: object) -> bool:
    """A boolean setting: its NNPM_* variable when set, else config.toml's value."""
    if os.environ.get(variable) is not None:
        return parse_bool(os.environ[variable], variable)
    return configured is True


CONFIG_KEYS = {"registry": "the default registry URL (no token needed to read from it)",
               "index": "oci://HOST/NAMESPACE/: resolve dependencies from an OCI registry's repositories",
               "sign": "true: 'nnpm publish' signs with the default key (as --sign does)",
               "require-signatures": "true: installs refuse packages without a verified publisher signature"}
BOOL_KEYS = ("sign", "require-signatures")


def _key(key: str) -> str:
    """A TOML key: bare when it may be, else quoted (a registry URL)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_lines(table: dict, prefix: str = "") -> list[str]:
    """A table's scalars as `key = value` lines, then each sub-table under its own header (JSON strings are
    TOML basic strings, JSON's true/false and integers TOML's)."""
    lines = [f"{_key(k)} = {json.dumps(v)}" for k, v in table.items() if not isinstance(v, dict) and v is not None]
    for key, sub in ((k, v) for k, v in table.items() if isinstance(v, dict)):
        if sub:
            name = f"{prefix}.{_key(key)}" if prefix else _key(key)
            lines += ["", f"[{name}]"] + _toml_lines(sub, name)
    return lines


def write_config(home: Path, registry: str | None, tokens: dict[str, str], index: str | None = None,
                 **others: object) -> Path:
    """Write config.toml (the default registry, the OCI index, a token per registry, and every other setting given
    in `others`, TOML names), readable by the owner only."""
    body = {"registry": registry or None, "index": index or None, **others, "tokens": dict(sorted(tokens.items()))}
    lines = _toml_lines(body)
    home.mkdir(parents=True, exist_ok=True)
    path = home / CONFIG_NAME
    atomic_write(path, ("\n".join(lines) + "\n").encode(), mode=0o600)
    return path


def save_login(home: Path, registry: str, token: str) -> Path:
    """Store the registry as default and its token in config.toml."""
    registry = normalise_url(registry)
    config = read_config(home)
    tokens = dict(config.get("tokens", {}))
    tokens[registry] = token
    return write_config(home, registry, tokens, config.get("index"), **_others(config))


def _others(config: dict) -> dict:
    """The settings of config.toml besides registry, index and tokens: kept as they are when one changes."""
    return {k: v for k, v in config.items() if k not in ("registry", "index", "tokens")}


def forget_login(home: Path, registry: str) -> bool:
    """Remove the saved token of a registry (the default registry stays); True when there was one."""
    registry = normalise_url(registry)
    config = read_config(home)
    tokens = dict(config.get("tokens", {}))
    if tokens.pop(registry, None) is None:
        return False
    write_config(home, config.get("registry"), tokens, config.get("index"), **_others(config))
    return True


def set_config(home: Path, key: str, value: str | None) -> Path:
    """Set (or, with None, unset) one key of config.toml."""
    if key not in CONFIG_KEYS:
        raise ConfigError(f"unknown setting {key!r}", hint="settings: " + ", ".join(CONFIG_KEYS))
    config = read_config(home)
    tokens = dict(config.get("tokens", {}))
    others = _others(config)
    if key in BOOL_KEYS:
        others.pop(key, None)
        if value is not None:
            others[key] = parse_bool(value, key)
        return write_config(home, config.get("registry"), tokens, config.get("index"), **others)
    if key == "index":
        if value:
            from nnpm.oci.reference import parse_ref

            parse_ref(value if value.endswith("/") else value + "/", namespace=True)   # refuses what is not one
        return write_config(home, config.get("registry"), tokens, value or None, **others)
    return write_config(home, normalise_url(value) if value else None, tokens, config.get("index"), **others)
