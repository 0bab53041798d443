"""`python -m registry_server.tufadmin init|rotate` and `nnpm registry keys init|rotate`: the signed index's keys.

`init --root-keys DIR [--threshold N] [--count M]` writes M offline root keys to DIR (and
a copy of root version 1, `DIR/1.root.json`, for explicit pinning), the online key to
`--tuf-online-key` (default `<data>/tuf-online.key`), and signs a first index over every
package. `rotate --root-keys DIR [--new-root-keys DIR2] [--new-online-key] [--threshold N]
[--count M]` signs root N+1 with the current root's threshold and with its own keys (those
in DIR2, made there when it holds none), so pinned clients follow it; a new online key
re-signs targets, bins, snapshot and timestamp. Both take `--data` and `--database-url`.
Keys are written before the commit and removed again if it fails, so the database never
names a key that is not on disk.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry_server.settings import ServerSettings


def run(argv: list[str], prog: str = "python -m registry_server.tufadmin") -> str:
    """Parse `init|rotate ...` and do it; the line to print. NnpmError on any failure."""
    from nnpm.errors import ConfigError
    from registry_server.options import build_parser, require_server_extra, settings_from

    if not argv or argv[0] not in ("init", "rotate"):
        raise ConfigError(f"usage: {prog} init|rotate --root-keys DIR ... (--help after the command lists options)")
    command, rest = argv[0], argv[1:]
    parser = build_parser("tuf", f"{prog} {command}")
    parser.add_argument("--root-keys", type=Path, required=True, metavar="DIR",
                        help="folder of the offline root keys (written by init; read by rotate)")
    parser.add_argument("--threshold", type=int, default=None, help="root keys that must sign a root (default 1; "
                        "rotate keeps the current one)")
    parser.add_argument("--count", type=int, default=None, help="root keys to make (default 1; rotate: as many as now)")
    if command == "rotate":
        parser.add_argument("--new-root-keys", type=Path, default=None, metavar="DIR2",
                            help="new root keys: the *.key files there, or new ones made there when it has none")
        parser.add_argument("--new-online-key", action="store_true", help="replace the online key")
    args = parser.parse_args(rest)
    require_server_extra()
    settings = settings_from(args, "tuf")
    if command == "init":
        return init(settings, args.root_keys, args.threshold or 1, args.count or 1)
    return rotate(settings, args.root_keys, args.new_root_keys, args.new_online_key, args.threshold, args.count)


def _sessions(settings: ServerSettings, *, create: bool = False):
    from nnpm.errors import ConfigError
    from registry_server.db.engine import make_engine, session_factory

    if create and settings.data_dir is not None:   # init before the first serve, as `registry user add` may
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    elif settings.database_url.startswith("sqlite:///"):
        if not Path(settings.database_url.removeprefix("sqlite:///")).is_file():
            raise ConfigError(f"there is no registry database in {settings.data_dir}",
                              hint="pass the registry's --data folder, or its --database-url")
    engine = make_engine(settings.database_url)
    return engine, session_factory(engine)


def init(settings: ServerSettings, root_dir: Path, threshold: int, count: int) -> str:
    """Make the root and online keys and sign index version 1 over every package; what was done, in one line."""
    from nnpm.errors import ConfigError
    from registry_server.services.tuf_keys import generate, key_files
    from registry_server.services.tuf_repo import newest
    from registry_server.services.tuf_sign import initialise

    if not 1 <= threshold <= count:
        raise ConfigError(f"--threshold {threshold} must be between 1 and --count ({count})")
    online_path = settings.tuf_key_path
    if online_path.exists() or key_files(root_dir):
        raise ConfigError(f"{online_path if online_path.exists() else root_dir} already holds TUF keys; "
                          "nothing was overwritten", hint="use 'nnpm registry keys rotate' to change keys")
    engine, sessions = _sessions(settings, create=True)
    try:
        root_signers, online = [generate() for _ in range(count)], generate()
        with sessions() as session:
            signed = initialise(session, root_signers, threshold, online, settings.tuf_timestamp_expiry)
            files = [root_dir / f"root-{i}.key" for i in range(1, count + 1)]
            _commit_with_keys(session, list(zip(files, root_signers)) + [(online_path, online)])
            (root_dir / "1.root.json").write_text(newest(session, "root").body)
    finally:
        engine.dispose()
    return (f"signed index initialised: root version 1 needs {threshold} of the {count} root keys in {root_dir} "
            f"(keep them offline), online key {online_path}, {signed} packages signed")


def _commit_with_keys(session, keys: list, restore: tuple[Path, bytes | None] | None = None) -> None:
    """Write new key files (0600, never over one), commit, and remove them again (restoring a replaced one) on failure."""
    from registry_server.services.tuf_keys import replace_key, write_key

    written: list[Path] = []
    try:
        for path, signer in keys:
            if restore is not None and path == restore[0]:
                replace_key(path, signer)   # the online key, swapped while the signing lock is held
            else:
                write_key(path, signer)
            written.append(path)
        session.commit()
    except BaseException:
        session.rollback()
        for path in written:
            if restore is not None and path == restore[0] and restore[1] is not None:
                path.write_bytes(restore[1])
            else:
                path.unlink(missing_ok=True)
        raise


def rotate(settings: ServerSettings, root_dir: Path, new_root_dir: Path | None, new_online: bool, threshold: int | None,
           count: int | None) -> str:
    """Sign root N+1 (new root keys, threshold and/or online key); what was done, in one line."""
    from nnpm.errors import ConfigError
    from registry_server.services.tuf_keys import generate, key_files, read_key
    from registry_server.services.tuf_sign import rotate as rotate_root

    old = [read_key(p) for p in key_files(root_dir)]
    if not old:
        raise ConfigError(f"no root keys (*.key) in {root_dir}", hint="pass the folder 'keys init' wrote them to")
    made: list = []
    new_root = None
    if new_root_dir is not None:
        new_root = [read_key(p) for p in key_files(new_root_dir)]
        if not new_root:
            new_root = made = [generate() for _ in range(count or len(old))]
    online = generate() if new_online else None
    online_path = settings.tuf_key_path
    engine, sessions = _sessions(settings)
    try:
        with sessions() as session:
            version = rotate_root(session, old, new_root, threshold, online, settings.tuf_timestamp_expiry)
            keys = [(new_root_dir / f"root-{i}.key", s) for i, s in enumerate(made, 1)]
            keys += [(online_path, online)] if online is not None else []
            previous = online_path.read_bytes() if online is not None and online_path.is_file() else None
            _commit_with_keys(session, keys, (online_path, previous))
    finally:
        engine.dispose()
    what = [f"new root keys in {new_root_dir}"] if new_root else []
    what += [f"a new online key at {online_path} (copy it to every replica)"] if online else []
    return f"root version {version} signed" + (": " + ", ".join(what) if what else "")


def main(argv: list[str] | None = None, prog: str = "python -m registry_server.tufadmin") -> int:
    """Run one command; 1 with one `error:` line on failure."""
    from nnpm.errors import NnpmError

    try:
        print(run(list(sys.argv[1:] if argv is None else argv), prog))
    except NnpmError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
