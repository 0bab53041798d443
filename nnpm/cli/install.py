"""`nnpm install` and `nnpm uninstall`: change what an environment holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import typer

from nnpm.cli.common import ENV, REGISTRY, REQUIRE_SIGNATURES, variant_policy

if TYPE_CHECKING:
    from nnpm.install.transaction import Installer


def installer(env: str | None, registry: str | None, progress: bool | None = None,
              require_signatures: bool = False) -> "Installer":
    """An Installer on the resolved settings and environment; dependencies from the OCI index when one is set."""
    from dataclasses import replace

    from nnpm.config import load_settings
    from nnpm.install.env import open_env
    from nnpm.install.transaction import Installer

    settings = load_settings(env=env, registry=registry)
    if require_signatures:
        settings = replace(settings, require_signatures=True)
    client = None
    if settings.index and not registry:
        from nnpm.oci.index import OciIndex
        from nnpm.oci.reference import parse_ref

        client = OciIndex(parse_ref(settings.index.rstrip("/") + "/", namespace=True))
    return Installer(settings, open_env(settings=settings), client=client, progress=progress)


def _pull_oci(inst: "Installer", specs: list[str], insecure: bool, quiet: bool) -> tuple[list[str], list, list]:
    """The specs that are not oci:// references, and the artifacts the others name, pulled into the store."""
    from nnpm.oci.reference import is_oci

    refs = [s for s in specs if is_oci(s)]
    if not refs:
        return specs, [], []
    from nnpm.oci.pull import pull
    from nnpm.oci.reference import parse_ref

    pulled = [pull(parse_ref(s, insecure=insecure), inst.store, progress=False if quiet else None) for s in refs]
    return ([s for s in specs if not is_oci(s)], [(p.manifest, p.variant, p.source) for p in pulled],
            [p.fetched for p in pulled if p.fetched])


def install(
    specs: Optional[list[str]] = typer.Argument(None, help="Names, requirements ('resnet18>=1,<2'), folders or .nnpm files."),
    env: str = ENV,
    registry: str = REGISTRY,
    pre: bool = typer.Option(False, "--pre", help="Allow pre-release versions."),
    locked: bool = typer.Option(False, "--locked", help="Install exactly what the lock file says."),
    lock_file: str = typer.Option(None, "--lock", help="Lock file for --locked (default: the environment's)."),
    force: bool = typer.Option(False, "--force", help="Re-verify the store's blobs (re-fetching corrupt ones) and "
                               "rebuild the installed folders."),
    upgrade: bool = typer.Option(False, "--upgrade", "-U", help="Upgrade the named packages to the newest allowed."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    prefer: str = typer.Option("reference", "--prefer", help="Which variant: reference, speed (fastest measured) or "
                               "size (smallest), within --max-drift.", metavar="reference|speed|size"),
    max_drift: float = typer.Option(0.01, "--max-drift", help="Largest measured drift (relative L2 against the "
                                    "reference) --prefer may accept.", min=0.0),
    variant: str = typer.Option(None, "--variant", help="Install this variant of the named packages."),
    insecure: bool = typer.Option(False, "--insecure", help="Plain HTTP to an OCI registry that is not on loopback."),
    require_signatures: bool = REQUIRE_SIGNATURES,
) -> None:
    """Install packages and their dependencies into an environment."""
    from pathlib import Path

    from nnpm.errors import ManifestError
    from nnpm.install.lockfile import Lock

    inst = installer(env, registry, progress=False if quiet else None, require_signatures=require_signatures)
    if inst.env.project is not None:
        _in_project(inst, specs, locked, quiet)
        return
    if locked:
        if specs:
            raise ManifestError("--locked installs what the lock file says; give no package names with it")
        result = inst.install_locked(Lock.read(Path(lock_file), missing_ok=False) if lock_file else None)
    else:
        if not specs:
            raise ManifestError("nothing to install", hint="e.g. nnpm install resnet18, or --locked")
        specs, prepared, pulls = _pull_oci(inst, specs, insecure, quiet)
        result = inst.install(specs, pre=pre, force=force, upgrade=upgrade, policy=variant_policy(prefer, max_drift, variant),
                              prepared=prepared)
        _count_pulls(result.fetched, pulls)
    _report(inst, result)


def _count_pulls(fetched, pulls: list) -> None:
    """The artifacts' layers came before the install: count them as fetched, not as already there."""
    for stats in pulls:
        fetched.downloaded += stats.downloaded
        fetched.bytes += stats.bytes
        fetched.present = max(0, fetched.present - stats.downloaded)
        fetched.present_bytes = max(0, fetched.present_bytes - stats.bytes)


def _report(inst: "Installer", result) -> None:
    """What the install did, one line per package, and what it fetched."""
    import sys

    from nnpm.cli.output import human_size, literal, plural, say

    for warning in result.warnings:
        print(f"warning: {literal(warning)}", file=sys.stderr)
    upgraded = {name: old for name, old, _ in result.upgraded}
    locked = inst.env.lock().packages if result.installed else {}
    for name, version in result.installed:
        signer = getattr(locked.get(name), "signer", "")
        signed = f" (signed by {signer[:19]}…)" if signer else ""
        say(f"upgraded {name} {upgraded[name]} -> {version}{signed}" if name in upgraded
            else f"installed {name} {version}{signed}")
        if name in result.variants:
            say(f"  variant {literal(result.variants[name].variant)}: {literal(result.variants[name].reason)}")
    for name, version in result.removed:
        say(f"removed {name} {version}")
    if result.satisfied:
        say("already satisfied: " + ", ".join(f"{n} {v}" for n, v in result.unchanged)
            + " (nnpm install -U upgrades)")
        return
    if result.unchanged and not result.installed:
        say("already installed: " + ", ".join(f"{n} {v}" for n, v in result.unchanged))
    f = result.fetched
    say(f"env {inst.env.name}: {plural(f.downloaded, 'blob')} fetched ({human_size(f.bytes)}), "
        f"{f.present} already in the store ({human_size(f.present_bytes)} not fetched), {plural(result.linked, 'file')} linked")


def _in_project(inst: "Installer", specs: list[str] | None, locked: bool, quiet: bool) -> None:
    """Inside a project, `nnpm install` alone syncs it; naming packages is `nnpm add`'s job (sync would undo it)."""
    from nnpm.errors import EnvError

    if specs:
        what = " ".join(specs)
        raise EnvError(f"this is project {inst.env.name!r}, whose environment holds what its nnpm.lock says",
                       hint=f"run 'nnpm add {what}', or 'nnpm --no-project install {what}' for a named environment")
    from nnpm.cli.project import sync

    sync(registry=inst.settings.registry, frozen=locked, force=False, quiet=quiet,
         require_signatures=inst.settings.require_signatures)


def uninstall(
    names: list[str] = typer.Argument(..., help="Packages to remove."),
    env: str = ENV,
) -> None:
    """Remove packages from an environment (and dependencies nothing else needs)."""
    from nnpm.cli.output import say
    from nnpm.errors import EnvError

    inst = installer(env, None)
    if inst.env.project is not None:
        raise EnvError(f"this is project {inst.env.name!r}, whose environment holds what its nnpm.lock says",
                       hint=f"run 'nnpm remove {' '.join(names)}'")
    removed = inst.uninstall(names)
    for name, version in removed:
        say(f"removed {name} {version}")


def register(app: typer.Typer) -> None:
    """Add `nnpm install` and `nnpm uninstall`."""
    app.command()(install)
    app.command()(uninstall)
