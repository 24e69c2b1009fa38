"""Partner apps: the OAuth2 endpoints they use and the admin routes that manage them."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from app.core import access
from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep, UnitOfWorkRoute
from app.identity import oauth, partners, tokens
from app.identity import partner_schemas as schemas
from app.identity.deps import CurrentActor
from app.identity.models import Org, PartnerApp
from app.settings import get_settings

router = APIRouter(route_class=UnitOfWorkRoute)

PROBLEM = {"model": None, "content": {"application/problem+json": {}}}
OAUTH_ERROR = {"model": schemas.OAuthError}


async def oauth_input(request: Request) -> oauth.OAuthInput:
    # The body is read here, on the event loop; the endpoint itself runs in the thread pool.
    return await oauth.read_oauth_input(request)


OAuthInputDep = Annotated[oauth.OAuthInput, Depends(oauth_input)]


def _form_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {oauth.FORM_MEDIA_TYPE: {"schema": {
        "type": "object", "properties": properties, "required": required}}}}}


_CLIENT_FIELDS = {
    "client_id": {"type": "string", "description": "client_secret_post only"},
    "client_secret": {"type": "string", "description": "client_secret_post only"},
}


@router.post(
    "/oauth/token", name="oauth_token", tags=["oauth"], response_class=JSONResponse,
    responses={200: {"model": schemas.TokenResponse}, 400: OAUTH_ERROR, 401: OAUTH_ERROR,
               429: OAUTH_ERROR},
    openapi_extra=_form_body({
        "grant_type": {"type": "string", "enum": [oauth.GRANT_TYPE]},
        "scope": {"type": "string", "description": "space-separated; default: all the app's"},
        **_CLIENT_FIELDS}, ["grant_type"]),
)
def token(request: Request, given: OAuthInputDep, db: SessionDep) -> Response:
    """Client credentials grant (RFC 6749 §4.4): authenticate with HTTP Basic or
    ``client_secret_post``; the access token lasts ten minutes. Errors are RFC 6749 JSON."""
    return oauth.token_response(db, request.app.state.settings, given)


@router.post(
    "/oauth/revoke", name="oauth_revoke", tags=["oauth"], response_class=JSONResponse,
    responses={200: {"description": "Revoked, or nothing to revoke (RFC 7009 §2.2)"},
               400: OAUTH_ERROR, 401: OAUTH_ERROR, 429: OAUTH_ERROR},
    openapi_extra=_form_body({
        "token": {"type": "string"}, "token_type_hint": {"type": "string"}, **_CLIENT_FIELDS},
        ["token"]),
)
def revoke(request: Request, given: OAuthInputDep, db: SessionDep) -> Response:
    """Revoke one of the calling app's access tokens (RFC 7009)."""
    return oauth.revocation_response(db, request.app.state.settings, given)


@router.get("/.well-known/oauth-authorization-server", tags=["oauth"],
            response_model=schemas.AuthorizationServerMetadata)
def authorization_server_metadata(request: Request) -> dict[str, Any]:
    """Authorization server metadata (RFC 8414)."""
    # Built from the configured public address, not from the request's Host header:
    # the issuer must equal the ``iss`` of the tokens, whoever asks and however.
    issuer = get_settings().issuer
    return oauth.metadata(
        issuer,
        token_endpoint=issuer + "/oauth/token",
        revocation_endpoint=issuer + "/oauth/revoke",
        jwks_uri=issuer + "/oauth/jwks",
    )


@router.get("/oauth/jwks", name="oauth_jwks", tags=["oauth"])
def jwks(response: Response) -> dict[str, Any]:
    """The public keys that verify access tokens (JWK Set)."""
    response.headers["cache-control"] = "public, max-age=300"
    return tokens.public_jwks()


# --- admin: managing the agency's partner apps ---------------------------------------------


@router.get("/api/v1/partner-apps", tags=["partner-apps"],
            response_model=Page[schemas.PartnerAppOut], responses={403: PROBLEM})
def list_partner_apps(actor: CurrentActor, db: SessionDep, page: PageParamsDep) -> dict[str, Any]:
    """Your agency's partner apps (admins)."""
    access.require_user(actor)
    rows, next_cursor = paginate(
        db, partners.readable_partner_apps(actor), listing="partner-apps",
        keys=[SortKey(PartnerApp.name), SortKey(PartnerApp.id)], params=page)
    return {"items": [schemas.PartnerAppOut.model_validate(row) for row in rows],
            "next_cursor": next_cursor}


@router.post("/api/v1/partner-apps", tags=["partner-apps"], status_code=201,
             response_model=schemas.PartnerAppCreated, responses={403: PROBLEM, 422: PROBLEM})
def create_partner_app(body: schemas.PartnerAppCreate, actor: CurrentActor, db: SessionDep,
                       response: Response) -> schemas.PartnerAppCreated:
    """Register a partner app (admin). The client secret is in this response only."""
    access.require_user(actor)
    access.require(actor, "partner_apps:manage")
    org = db.get(Org, actor.org_id)
    assert org is not None
    app, secret = partners.create_partner_app(db, actor, org=org, name=body.name,
                                              scopes=list(body.scopes))
    response.headers["location"] = f"/api/v1/partner-apps/{app.id}"
    return schemas.PartnerAppCreated(
        **schemas.PartnerAppOut.model_validate(app).model_dump(), client_secret=secret)


@router.get("/api/v1/partner-apps/{app_id}", tags=["partner-apps"],
            response_model=schemas.PartnerAppOut, responses={403: PROBLEM, 404: PROBLEM})
def get_partner_app(app_id: UUID, actor: CurrentActor, db: SessionDep) -> schemas.PartnerAppOut:
    access.require_user(actor)
    return schemas.PartnerAppOut.model_validate(partners.get_partner_app(db, actor, app_id))


@router.patch("/api/v1/partner-apps/{app_id}", tags=["partner-apps"],
              response_model=schemas.PartnerAppOut,
              responses={403: PROBLEM, 404: PROBLEM, 422: PROBLEM})
def update_partner_app(app_id: UUID, body: schemas.PartnerAppUpdate, actor: CurrentActor,
                       db: SessionDep) -> schemas.PartnerAppOut:
    """Rename, re-scope, disable or re-enable (admin). Disabling, or removing a scope,
    revokes the app's access tokens at once."""
    access.require_user(actor)
    app = partners.update_partner_app(
        db, actor, app_id, name=body.name,
        scopes=list(body.scopes) if body.scopes is not None else None, is_active=body.is_active)
    return schemas.PartnerAppOut.model_validate(app)


@router.post("/api/v1/partner-apps/{app_id}/secret", tags=["partner-apps"],
             response_model=schemas.PartnerAppSecretOut, responses={403: PROBLEM, 404: PROBLEM})
def rotate_partner_app_secret(app_id: UUID, actor: CurrentActor,
                              db: SessionDep) -> schemas.PartnerAppSecretOut:
    """A new client secret (admin), shown this once; the old one and its tokens stop now."""
    access.require_user(actor)
    app, secret = partners.rotate_secret(db, actor, app_id)
    return schemas.PartnerAppSecretOut(id=app.id, client_id=app.client_id, client_secret=secret)
