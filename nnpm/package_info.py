"""What `nnpm info` shows: an installed package, or one from the registry."""

from __future__ import annotations

from packaging.utils import canonicalize_name

from nnpm.errors import ManifestError, NotFoundError, NotInstalledError


def describe(spec: str, *, env: str | None = None, registry: str | None = None) -> dict:
    """Manifest, install location and available versions for NAME or NAME==VERSION."""
    from nnpm.config import load_settings
    from nnpm.env import open_env

    name, _, version = spec.partition("==")
    if not name or (version == "" and "==" in spec):
        raise ManifestError(f"{spec!r} is not NAME or NAME==VERSION")
    name = canonicalize_name(name)
    settings = load_settings(env=env, registry=registry)
    try:
        pkg = open_env(settings=settings).get(name, version or None)
        manifest, path = pkg.manifest.to_dict(), str(pkg.path)
    except NotInstalledError:
        manifest = path = None
    versions = []
    if settings.registry:
        from nnpm.client import RegistryClient

        packument = RegistryClient(settings.registry, cache_dir=settings.cache_dir).packument(name)
        if packument:
            versions = [(v["version"], v["yanked"]) for v in packument["versions"]]
            if manifest is None:
                pick = [v for v in packument["versions"] if v["version"] == version] if version else \
                    [v for v in packument["versions"] if v["version"] == packument.get("latest")]
                if pick:
                    manifest = pick[0]["manifest"]
    if manifest is None:
        raise NotFoundError(f"{spec} is neither installed nor on the registry",
                            hint="check the name with 'nnpm search'")
    return {"name": name, "manifest": manifest, "installed_path": path, "versions": versions}
