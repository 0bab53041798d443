"""Request-scoped dependencies: settings, blob store, one database session, the bearer's token and user; bodies.

`get_settings` and `get_store` are coroutines, so they cost no worker thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from nnpm.errors import RegistryError, UnauthenticatedError
from registry_server.db.tables import Token, User
from registry_server.services.auth import token_for
from registry_server.settings import ServerSettings
from registry_server.storage.base import BlobStore

bearer = HTTPBearer(auto_error=False, description="An API token from `nnpm registry user add NAME`.")


async def get_settings(request: Request) -> ServerSettings:
    """The app's settings."""
    return request.app.state.settings


async def get_store(request: Request) -> BlobStore:
    """The app's blob store."""
    return request.app.state.store


async def body_stream(request: Request, idle: float) -> AsyncIterator[bytes]:
    """The request body as it arrives; a 408 RegistryError when nothing arrives for `idle` seconds."""
    chunks = request.stream().__aiter__()
    while True:
        try:
            with anyio.fail_after(idle):
                chunk = await chunks.__anext__()
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise RegistryError(f"the upload sent nothing for {idle:g} s, so it was dropped; nothing was stored",
                                status=408, hint="check the connection and send it again") from None
        yield chunk


def get_session(request: Request) -> Iterator[Session]:
    """One session for this request, closed when the request is done."""
    with request.app.state.sessions() as session:
        yield session


def current_token(creds: HTTPAuthorizationCredentials | None = Depends(bearer),
                  session: Session = Depends(get_session)) -> Token:
    """The stored token behind `Authorization: Bearer <token>` (its user loaded), or 401."""
    if creds is None or not creds.credentials:
        raise UnauthenticatedError("this call needs an API token",
                        hint="send 'Authorization: Bearer <token>'; an operator makes one with "
                             "'nnpm registry user add NAME'")
    token = token_for(session, creds.credentials)
    if token is None:
        raise UnauthenticatedError("the API token is not valid",
                        hint="check the token, or ask the registry operator for a new one")
    return token


def current_user(token: Token = Depends(current_token)) -> User:
    """The user behind `Authorization: Bearer <token>`, or 401."""
    return token.user
