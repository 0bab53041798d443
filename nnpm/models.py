"""Installed packages as imports: ``from nnpm.models import resnet18``.

An attribute name maps to a package name with '_' read as '-' (names compare as PEP 503),
and loads the version installed in the environment in use (inside a project, its `.nnpm/`;
else NNPM_ENV, else 'default') as an `nnpm.Model`. Models are cached per (environment
folder, name) for the life of the process. A name that is not installed raises ImportError saying how to install it;
names starting with '_' raise AttributeError, so introspection never loads a model.
"""

# Every module-level name is private ('_') or a dunder, so none can shadow a package name.
import threading as _threading

_cache: dict = {}          # (environment folder, name) -> nnpm.Model
_lock = _threading.Lock()


def __getattr__(attr: str) -> "nnpm.Model":  # noqa: F821 (a string: no import at module level)
    if attr.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
    from nnpm.errors import ManifestError, NotInstalledError
    from nnpm.format.fields import canonical_name
    from nnpm.install.env import open_env

    try:
        name = canonical_name(attr.replace("_", "-"))
    except ManifestError:
        raise ImportError(f"{attr!r} is not a valid package name", name=__name__) from None
    env = open_env()
    key = (str(env.root), name)
    with _lock:  # one load per key, even when threads import at once
        model = _cache.get(key)
        if model is None:
            from nnpm.runtime.load import load

            try:
                model = load(name, env=env)
            except NotInstalledError as exc:
                raise ImportError(f"cannot import {attr!r} from {__name__}: {name} is not installed in "
                                  f"{env.label}; run '{env.install_command(name)}'", name=__name__) from exc
            _cache[key] = model
    return model


def __dir__() -> list[str]:
    names = set(globals())
    try:
        from nnpm.install.env import open_env

        names |= {n.replace("-", "_") for n in open_env().lock().packages}
    except Exception:  # a broken or missing environment must not break dir() or tab completion
        pass
    return sorted(names)


def _clear_cache() -> None:
    """Forget loaded models (e.g. after installing a new version in this process)."""
    with _lock:
        _cache.clear()
