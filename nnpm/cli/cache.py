"""`nnpm cache info|verify|clean` over the content-addressed store."""

from __future__ import annotations

import typer

cache_app = typer.Typer(help="Inspect and clean the local store.", no_args_is_help=True)


def _store_and_used():
    from nnpm.config import load_settings
    from nnpm.install.env import all_envs
    from nnpm.install.store import Store

    settings = load_settings()
    used = set()
    for env in all_envs(settings):
        for p in env.lock().packages.values():
            used.add(p.manifest_sha256)
            used.update(d for _, _, d in p.files)
    return settings, Store(settings.store_dir), used


@cache_app.command("info")
def info() -> None:
    """Where the store is, how many blobs and bytes it holds, how many are in use."""
    from nnpm.cli.output import human_size

    settings, store, used = _store_and_used()
    count, size = store.usage()
    in_use = sum(1 for d, _ in store.blobs() if d in used)
    print(f"store: {store.root}\nblobs: {count} ({human_size(size)}), {in_use} used by environments")


@cache_app.command("verify")
def verify() -> None:
    """Re-hash every blob in the store and every environment's installed files."""
    from nnpm.cli.output import say
    from nnpm.errors import IntegrityError
    from nnpm.install.audit import audit

    settings, store, _ = _store_and_used()
    found = audit(settings, store)
    for digest in found.corrupt_blobs:
        say(f"corrupt blob sha256:{digest[:12]}… in the store")
    for damage in found.damaged:
        say(f"env {damage.env}: {damage.name} {damage.version} has changed files "
            f"({', '.join(damage.paths[:5])}{', …' if len(damage.paths) > 5 else ''}); "
            f"repair: {damage.repair()}")
    if found.corrupt_blobs or found.damaged:
        first = found.damaged[0].repair() if found.damaged else "nnpm cache clean --corrupt"
        blobs = ", ".join(d[:12] + "…" for d in found.corrupt_blobs[:3]) + (", …" if len(found.corrupt_blobs) > 3 else "")
        hurt = ", ".join(f"{d.name} {d.version} in env {d.env}" for d in found.damaged[:3])
        raise IntegrityError(f"{len(found.corrupt_blobs)} corrupt blob(s) in the store" + (f" ({blobs})" if blobs else "")
                             + f"; {len(found.damaged)} damaged installed package(s)" + (f" ({hurt})" if hurt else ""),
                             hint=f"run the repair command shown for each, e.g. '{first}'")
    say(f"all {found.blobs_checked} blobs and {found.files_checked} installed files verified")


@cache_app.command("clean")
def clean(corrupt: bool = typer.Option(False, "--corrupt", help="Remove only blobs that fail verification.")) -> None:
    """Remove blobs no environment uses (and unfinished downloads); waits for running installs."""
    from nnpm.cli.output import human_size, say

    _, store, _ = _store_and_used()
    with store.cleaning(on_wait=lambda: say("waiting for running installs to finish…")):
        _, _, used = _store_and_used()   # read again: an install may have finished while we waited
        keep = {d for d, _ in store.blobs()} - set(store.verify()) if corrupt else used
        count, freed = store.prune(keep)
    say(f"removed {count} files, freed {human_size(freed)}")


def register(app: typer.Typer) -> None:
    """Add the cache sub-app."""
    app.add_typer(cache_app, name="cache")
