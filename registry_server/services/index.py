"""The signed index (TUF): re-signing what a change of packages touches, in the caller's transaction."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy.orm import Session, sessionmaker

from registry_server.services.tuf_keys import OnlineKey
from registry_server.settings import ServerSettings

log = logging.getLogger("registry_server")
TUF_KEY = "nnpm.tuf_online_key"   # where a session's info holds the OnlineKey


def configure(sessions: sessionmaker[Session], settings: ServerSettings) -> OnlineKey:
    """Make `sessions` re-sign the index with the online key `settings` name; that key (one log line if absent).

    Every writer of packages (the app, `nnpm registry import`) uses sessions configured so."""
    key = OnlineKey(settings.tuf_key_path, settings.tuf_timestamp_expiry)
    sessions.configure(info={TUF_KEY: key})
    if not key.path.is_file():
        log.info("no TUF online key at %s: the signed index (/tuf/) is not served; "
                 "'nnpm registry keys init' makes one", key.path)
    return key


def packages_changed(session: Session, names: Iterable[str]) -> None:
    """Re-sign the bins holding these packages' packuments, then snapshot and timestamp, before the caller commits.

    Nothing when the registry has no TUF keys (`nnpm registry keys init` was never run)."""
    key = session.info.get(TUF_KEY)
    if key is None or not key.path.is_file():
        return
    from registry_server.services.tuf_sign import packages_changed as resign

    resign(session, key, names)
