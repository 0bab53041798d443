"""What `nnpm info` shows: an installed package, or one from the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nnpm.errors import NnpmError, NotFoundError, NotInstalledError, RegistryError, SpecError
from nnpm.format.spec import parse_spec

if TYPE_CHECKING:
    from nnpm.format.packument import Packument, Release


def describe(spec: str, *, env: str | None = None, registry: str | None = None) -> dict:
    """Manifest, install location and available versions for NAME or NAME==VERSION."""
    from nnpm.config import load_settings
    from nnpm.install.env import open_env

    parsed = parse_spec(spec, paths=False)
    if parsed.specifier and parsed.pinned is None:
        raise SpecError(f"{spec!r} is not NAME or NAME==VERSION", hint="e.g. nnpm info resnet18==1.0.0")
    name, version = parsed.name, str(parsed.pinned) if parsed.pinned else None
    settings = load_settings(env=env, registry=registry)
    signature = measured = installed_variant = None
    provenance: dict = {}
    try:
        env = open_env(settings=settings)
        pkg = env.get(name, version)
        manifest, path, installed_variant = pkg.manifest.to_dict(), str(pkg.path), pkg.variant
        if pkg.manifest.project.pipeline:   # a pipeline's interface is its steps' exposed ports
            from nnpm.runtime.steps import step_signature

            try:
                signature = step_signature(pkg, env).to_dict()
            except NnpmError:
                signature = None
    except NotInstalledError:
        manifest = path = None
    versions, offline = [], None
    if settings.registry:
        from nnpm.client.api import RegistryClient

        try:
            packument = RegistryClient(settings.registry, cache_dir=settings.cache_dir).packument(name)
        except RegistryError as exc:
            if manifest is None or exc.status is not None:   # nothing to show, or the registry said no
                raise
            packument, offline = None, exc.message          # installed: show it without the registry
        if packument:
            versions = [(str(r.version), r.yanked) for r in packument.releases]
            shown = version or (manifest or {}).get("package", {}).get("version")
            release = packument.release(shown) if shown else packument.latest
            measured = release.measured if release is not None else None
            provenance = _provenance(packument, release) if release is not None else provenance
            if manifest is None and release is not None:
                manifest = release.manifest_data
                if release.signature is not None:
                    signature = release.signature.to_dict()
    if manifest is None:
        raise NotFoundError(f"{spec} is neither installed nor on the registry",
                            hint="check the name with 'nnpm search'")
    return {"name": name, "manifest": manifest, "signature": signature or (manifest or {}).get("signature"),
            "installed_path": path, "installed_variant": installed_variant, "versions": versions,
            "variants": _variants(manifest, measured), "measured": measured,
            "registry_unreachable": offline, **provenance}


def _provenance(packument: "Packument", release: "Release") -> dict:
    """Who published a release and which registered key signed it (verified here), or why it does not verify."""
    from nnpm.errors import SignatureError

    try:
        key = packument.publisher_key(release)
        signer = key.keyid if key is not None else None
    except SignatureError as exc:
        signer = f"INVALID: {exc.message}"
    return {"publisher": release.publisher, "signer": signer}


def _variants(manifest_data: dict, measured: dict | None) -> list[dict]:
    """The variant rows of a model package: cost from the manifest, figures from the registry's measurement."""
    from nnpm.format.manifest import Manifest

    manifest = Manifest.from_dict(manifest_data)
    if not manifest.project.models:
        return []
    from nnpm.format.measured import variant_rows

    return [row.to_dict() | {"comparison": row.comparison()} for row in variant_rows(manifest, measured)]
