"""`nnpm cache info|verify|clean` over the content-addressed store."""

from __future__ import annotations

import typer

cache_app = typer.Typer(help="Inspect and clean the local store.", no_args_is_help=True)


def _store_and_used():
    from nnpm.config import load_settings
    from nnpm.install.env import env_names, open_env
    from nnpm.install.store import Store

    settings = load_settings()
    used = set()
    for name in env_names(settings):
        for p in open_env(name, settings).lock().packages.values():
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
    """Re-hash every blob in the store."""
    from nnpm.errors import IntegrityError

    _, store, _ = _store_and_used()
    bad = store.verify()
    if bad:
        raise IntegrityError(f"{len(bad)} corrupt blob(s) in the store: " + ", ".join(d[:12] + "…" for d in bad),
                             hint="run 'nnpm cache clean --corrupt' and reinstall the affected packages")
    print(f"all {store.usage()[0]} blobs verified")


@cache_app.command("clean")
def clean(corrupt: bool = typer.Option(False, "--corrupt", help="Remove only blobs that fail verification.")) -> None:
    """Remove blobs no environment uses (and unfinished downloads)."""
    from nnpm.cli.output import human_size

    _, store, used = _store_and_used()
    keep = {d for d, _ in store.blobs()} - set(store.verify()) if corrupt else used
    count, freed = store.prune(keep)
    print(f"removed {count} files, freed {human_size(freed)}")


def register(app: typer.Typer) -> None:
    """Add the cache sub-app."""
    app.add_typer(cache_app, name="cache")
