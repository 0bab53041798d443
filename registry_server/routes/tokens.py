"""`/api/v1/tokens`: a user lists and revokes their own API tokens (making them stays with the operator)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from registry_server.db.tables import Token
from registry_server.routes.deps import current_token, get_session
from registry_server.services.auth import list_tokens, revoke_token

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


@router.get("", summary="Your API tokens: id, when made and last used, a short prefix (never the token)")
def get_tokens(token: Token = Depends(current_token), session: Session = Depends(get_session)) -> dict:
    return {"tokens": list_tokens(session, token.user, current=token)}


@router.delete("/{token_id}", summary="Revoke one of your API tokens (the one in use too)",
               responses={404: {"description": "you have no token with this id"}})
def delete_token(token_id: int, token: Token = Depends(current_token), session: Session = Depends(get_session)) -> dict:
    revoke_token(session, token.user, token_id)
    return {"revoked": token_id}
