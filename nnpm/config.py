"""Where nnpm keeps things and which registry it talks to; resolved once, passed in.

NNPM_HOME (default: the platform's user data dir) holds:
    config.toml      registry URL and tokens per registry (mode 0600)
    store/v1/...     content-addressed blobs (see nnpm.install.store)
    envs/<name>/     environments (see nnpm.install.env)
    cache/           packuments with their ETags
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from nnpm.errors import ConfigError
from nnpm.fsutil import atomic_write

DEFAULT_ENV = "default"
CONFIG_NAME = "config.toml"


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

    @property
    def store_dir(self) -> Path:
        """Root of the content-addressed store."""
        return self.home / "store"

    @property
    def envs_dir(self) -> Path:
        """Folder holding every environment."""
        return self.home / "envs"

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
                    index=index if isinstance(index, str) else None)


CONFIG_KEYS = {"registry": "the default registry URL (no token needed to read from it)",
               "index": "oci://HOST/NAMESPACE/: resolve dependencies from an OCI registry's repositories"}


def write_config(home: Path, registry: str | None, tokens: dict[str, str], index: str | None = None) -> Path:
    """Write config.toml (the default registry, the OCI index, a token per registry), readable by the owner only."""
    lines = [f"registry = {json.dumps(registry)}"] if registry else []
    lines += [f"index = {json.dumps(index)}"] if index else []
    if tokens:
        lines += ["", "[tokens]"] + [f"{json.dumps(url)} = {json.dumps(tok)}" for url, tok in sorted(tokens.items())]
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
    return write_config(home, registry, tokens, config.get("index"))


def forget_login(home: Path, registry: str) -> bool:
    """Remove the saved token of a registry (the default registry stays); True when there was one."""
    registry = normalise_url(registry)
    config = read_config(home)
    tokens = dict(config.get("tokens", {}))
    if tokens.pop(registry, None) is None:
        return False
    write_config(home, config.get("registry"), tokens, config.get("index"))
    return True


def set_config(home: Path, key: str, value: str | None) -> Path:
    """Set (or, with None, unset) one key of config.toml."""
    if key not in CONFIG_KEYS:
        raise ConfigError(f"unknown setting {key!r}", hint="settings: " + ", ".join(CONFIG_KEYS))
    config = read_config(home)
    tokens = dict(config.get("tokens", {}))
    if key == "index":
        if value:
            from nnpm.oci.reference import parse_ref

            parse_ref(value if value.endswith("/") else value + "/", namespace=True)   # refuses what is not one
        return write_config(home, config.get("registry"), tokens, value or None)
    return write_config(home, normalise_url(value) if value else None, tokens, config.get("index"))
