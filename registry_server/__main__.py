"""`python -m registry_server [--data DIR] [--host H] [--port P] ...`: run one registry server.

The options are registry_server/options.py's, shared with `nnpm registry serve`.
"""

from __future__ import annotations

import sys

from registry_server.settings import ServerSettings


def serve(settings: ServerSettings) -> None:
    """Print where the registry listens, then run it with uvicorn until stopped."""
    import uvicorn

    from registry_server.app import create_app
    from registry_server.connections import protocol_class

    app = create_app(settings)
    app.state.prestart_validators = True
    print(f"nnpm registry serving on http://{settings.host}:{settings.port}", flush=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info",
                http=protocol_class(settings.header_timeout), timeout_graceful_shutdown=5, server_header=False)


def main(argv: list[str] | None = None, prog: str = "python -m registry_server") -> int:
    """Parse the options and serve; a configuration problem (bad storage URL, missing bucket) is one line and exit 2."""
    from nnpm.errors import NnpmError
    from registry_server.options import build_parser, require_server_extra, settings_from

    args = build_parser("serve", prog).parse_args(argv)
    try:
        require_server_extra()
        serve(settings_from(args, "serve"))
    except NnpmError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
