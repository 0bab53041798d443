"""Owner-gated writes: who owns a package, adding and removing owners (never the last), yanking and un-yanking."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError as DbIntegrityError
from sqlalchemy.orm import Session

from nnpm.errors import ConflictError, ForbiddenError, NotFoundError
from registry_server.db.tables import Owner, Package, Release, User
from registry_server.services import index
from registry_server.services.auth import find_user


def is_owner(session: Session, package: Package, user: User) -> bool:
    """True when `user` owns `package`."""
    return session.get(Owner, (package.id, user.id)) is not None


def require_owner(session: Session, package: Package, user: User) -> None:
    """403 unless `user` owns `package`."""
    if not is_owner(session, package, user):
        raise ForbiddenError(f"{user.name!r} is not an owner of {package.name!r}",
                             hint=f"ask an owner to add you: nnpm owner add {package.name} {user.name}")


def add_owner(session: Session, package: Package, name: str) -> None:
    """Make the user called `name` an owner too (idempotent); 404 for an unknown user."""
    user = find_user(session, name)
    if user is None:
        raise NotFoundError(f"no user {name!r} on this registry",
                            hint="an operator creates users with 'nnpm registry user add NAME'")
    if is_owner(session, package, user):
        return
    session.add(Owner(package_id=package.id, user_id=user.id))
    try:
        session.commit()
    except DbIntegrityError:  # added concurrently: same outcome
        session.rollback()


def remove_owner(session: Session, package: Package, name: str) -> None:
    """Stop the user called `name` owning `package` (commits): 404 when they do not, 409 when they are the last owner.

    The package's row is locked first (PostgreSQL; SQLite lets one writer in at a time), so two
    owners removing each other at once cannot leave the package with none."""
    user = find_user(session, name)
    if user is None:
        raise NotFoundError(f"no user {name!r} on this registry")
    try:
        session.execute(select(Package.id).where(Package.id == package.id).with_for_update())
        removed = session.execute(delete(Owner).where(Owner.package_id == package.id,
                                                      Owner.user_id == user.id)).rowcount
        if not removed:
            raise NotFoundError(f"{user.name!r} is not an owner of {package.name!r}",
                                hint=f"see who is: nnpm owner list {package.name}")
        left = session.scalar(select(func.count()).select_from(Owner).where(Owner.package_id == package.id))
        if not left:
            raise ConflictError(f"{user.name!r} is the last owner of {package.name!r}; a package always keeps one",
                                hint=f"add another owner first: nnpm owner add {package.name} NAME")
        session.commit()
    except BaseException:
        session.rollback()
        raise


def set_yanked(session: Session, row: Release, yanked: bool, reason: str | None) -> Release:
    """Yank (with an optional reason) or un-yank a version; never deletes it."""
    row.yanked = yanked
    row.yanked_reason = (reason.replace("\x00", "") or None) if yanked and reason else None  # no NUL in PG text
    index.packages_changed(session, [row.package.name])   # re-signed in the same commit as the yank
    session.commit()
    return row
