"""`/api/v1/packages/{name}/keys`: a package's publisher keys; anyone lists them, owners add and remove them.

Registered before the packages router, whose `/packages/{name}/{version}` would take `keys` for a version.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from registry_server.db.tables import User
from registry_server.routes.deps import current_user, get_session
from registry_server.services import catalog, keys
from registry_server.services.owners import require_owner

router = APIRouter(prefix="/api/v1/packages/{name}/keys", tags=["keys"])


class KeyRequest(BaseModel):
    """An Ed25519 public key: the base64 of its 32 raw bytes, or a PEM (or `ssh-ed25519`) public key."""

    model_config = ConfigDict(extra="forbid")
    public: str | None = Field(None, max_length=100)
    pem: str | None = Field(None, max_length=4000)


@router.get("", summary="The package's publisher keys, removed ones too (with removed_at)")
def get_keys(name: str, session: Session = Depends(get_session)) -> dict:
    pkg = catalog.require_package(session, catalog.url_name(name))
    return {"keys": keys.list_keys(session, pkg)}


@router.post("", status_code=201, summary="Register a publisher key (owners only)",
             responses={200: {"description": "the key was registered already"}, 201: {"description": "registered"}})
def post_key(name: str, body: KeyRequest, request: Request, user: User = Depends(current_user),
             session: Session = Depends(get_session)) -> JSONResponse:
    pkg = catalog.require_package(session, catalog.url_name(name))
    require_owner(session, pkg, user)
    key = keys.key_from_request(body.public, body.pem)
    keys.check_approval(session, pkg, "add", key.keyid, request.headers)
    created, entry = keys.add_key(session, pkg, user, key)
    return JSONResponse({"key": entry, "keys": keys.list_keys(session, pkg)}, status_code=201 if created else 200)


@router.delete("/{keyid}", summary="Remove a publisher key (owners only); what it signed still verifies",
               responses={404: {"description": "no such package, or no active key with this id"}})
def delete_key(name: str, keyid: str, request: Request, user: User = Depends(current_user),
               session: Session = Depends(get_session)) -> dict:
    pkg = catalog.require_package(session, catalog.url_name(name))
    require_owner(session, pkg, user)
    keys.check_approval(session, pkg, "remove", keyid, request.headers)
    entry = keys.remove_key(session, pkg, keyid)
    return {"key": entry, "keys": keys.list_keys(session, pkg)}
