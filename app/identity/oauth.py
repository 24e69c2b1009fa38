"""The OAuth2 authorization server for partner apps, on Authlib.

Client credentials grant (RFC 6749 §4.4) at ``POST /oauth/token`` and token
revocation (RFC 7009) at ``POST /oauth/revoke``. Clients authenticate with HTTP
Basic or ``client_secret_post``; parameters travel form-encoded in the body only,
never in the URL. Answers, errors included, are RFC 6749 JSON (``{"error": ...}``),
not problem+json: that is what OAuth client libraries understand.

Access tokens are ES256 JWTs from :mod:`app.identity.tokens` (audience
``advocase:partner``, ``sub`` = client id, ``org``, ``scope``, ``jti``), valid for
``partner_token_minutes``. Each has a ``partner_token`` row, which bearer
authentication checks on every request, so revocation and disabling an app take
effect at once.

Transport rule (decided here, before Authlib sees the request):

- ``https`` is always accepted;
- plain ``http`` is accepted when ``ADVOCASE_ENV`` is not ``production``
  (development and tests), or when the request is addressed to a loopback host
  (``localhost``, ``127.0.0.0/8``, ``::1``: it never left the machine);
- otherwise the answer is 400 ``invalid_request`` and nothing else is looked at.

Behind a TLS-terminating proxy the scheme comes from ``X-Forwarded-Proto``, which
uvicorn (started with ``proxy_headers``) honours only from the addresses in
``FORWARDED_ALLOW_IPS`` (default: loopback): set it to the proxy's address. The
application never reads the header itself, so a client cannot talk its way past
the rule. Authlib's own check knows only https and loopback, so outside
production it is switched off with ``AUTHLIB_INSECURE_TRANSPORT`` (our rule above
still applies); in production it stays on as a second, identical check.

Rate limits (sliding window, shared through the rate-limit store): per client id
and per client address, separately for each endpoint; over the limit is 429 with
``Retry-After`` and the RFC 6749 error ``temporarily_unavailable``.

Audit: every issued and revoked token (actor: the partner app) and every failed
client authentication (on the app's org chain when the client id is known, on the
system chain otherwise). Secrets, tokens and unknown client ids are never recorded
or logged.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl
from uuid import uuid4

import sqlalchemy as sa
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    InsecureTransportError,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    JsonRequest,
    OAuth2Error,
    OAuth2Request,
    UnsupportedGrantTypeError,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from sqlmodel import Session
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from app.core import audit
from app.core.access import PARTNER_SCOPES, Actor
from app.core.crypto import constant_time_equal, token_digest
from app.core.ratelimit import RateLimiter, StoreUnavailable, get_store, normalise_address
from app.db import utcnow
from app.identity import tokens
from app.identity.models import PartnerApp, PartnerToken
from app.settings import Settings

GRANT_TYPE = "client_credentials"
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 20
MAX_CLIENT_ID_LENGTH = 64

# (requests, window in seconds) per endpoint; tests may lower them.
LIMIT_PER_CLIENT = (30, 60.0)
LIMIT_PER_ADDRESS = (120, 60.0)

CLIENT_AUTH_FAILED = "Client authentication failed."

# Authlib's debug lines print whole token responses: keep them out of any log.
logging.getLogger("authlib").setLevel(logging.INFO)

_insecure_transport_lock = threading.Lock()


# --- the request, read before Authlib sees it ---------------------------------------------


@dataclass(frozen=True)
class OAuthInput:
    """An OAuth endpoint request with its body already read (Starlette reads bodies
    asynchronously; Authlib and the database work run synchronously)."""

    method: str
    url: str
    scheme: str
    host: str | None
    address: str
    # Credentials travel in these two: kept out of reprs (tracebacks, debug output).
    headers: Headers = field(repr=False)
    form: dict[str, str] = field(repr=False)
    problem: str | None = None  # why the parameters cannot be used, for invalid_request


async def read_oauth_input(request: Request) -> OAuthInput:
    body = await request.body()
    form: dict[str, str] = {}
    problem = None
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if request.url.query:
        problem = "Send the parameters in the form-encoded body, never in the URL."
    elif content_type != FORM_MEDIA_TYPE and (body or content_type):
        problem = f"Send the parameters as {FORM_MEDIA_TYPE}."
    else:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                              max_num_fields=MAX_FORM_FIELDS)
        except (UnicodeDecodeError, ValueError):
            problem = "The body is not a valid form-encoded UTF-8 document."
        else:
            form = dict(pairs)
            if len(form) != len(pairs):
                problem = "A parameter is repeated (RFC 6749 section 3.2)."
    return OAuthInput(
        method=request.method,
        url=str(request.url.replace(query="")),  # a query is refused; never keep it
        scheme=request.url.scheme,
        host=request.url.hostname,
        address=request.client.host if request.client else "unknown",
        headers=request.headers,
        form=form if problem is None else {},
        problem=problem,
    )


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def transport_allowed(settings: Settings, scheme: str, host: str | None) -> bool:
    """The transport rule of the module docstring."""
    if scheme == "https":
        return True
    return settings.env != "production" or is_loopback_host(host)


def _let_authlib_accept_plain_http() -> None:
    # Only reached outside production, after our own rule accepted the request.
    if os.environ.get("AUTHLIB_INSECURE_TRANSPORT"):
        return
    with _insecure_transport_lock:
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")


class PartnerOAuth2Request(OAuth2Request):
    """Authlib's request over the already-read form; the query string is never read."""

    def __init__(self, given: OAuthInput) -> None:
        super().__init__(given.method, given.url, headers=given.headers)
        self.payload = BasicOAuth2Payload(given.form)
        self._form = given.form

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        return self._form


# --- the client, the grant, revocation ------------------------------------------------------


class PartnerClient(ClientMixin):
    """Authlib's view of a :class:`PartnerApp` (only active apps are ever wrapped)."""

    def __init__(self, app: PartnerApp) -> None:
        self.app = app

    def __repr__(self) -> str:  # Authlib logs clients: an id, nothing secret
        return f"<PartnerClient {self.app.id}>"

    @property
    def scopes(self) -> list[str]:
        return self.app.scopes.split()

    def get_client_id(self) -> str:
        return self.app.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """None requested: all the app's scopes; else exactly those requested, or None
        (→ ``invalid_scope``) when one of them is not the app's."""
        granted = self.scopes
        requested = set(scope_to_list(scope) or [])
        if not requested:
            return " ".join(granted)
        if not requested <= set(granted):
            return None
        return " ".join(name for name in granted if name in requested)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return constant_time_equal(token_digest(client_secret), self.app.client_secret_digest)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in CLIENT_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE


class PartnerClientCredentialsGrant(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def validate_requested_scope(self) -> None:
        super().validate_requested_scope()  # scopes this server knows at all
        if self.request.client.get_allowed_scope(self.request.payload.scope) is None:
            raise InvalidScopeError("A requested scope is not granted to this app.")


class PartnerRevocationEndpoint(RevocationEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def check_params(self, request: OAuth2Request, client: PartnerClient) -> None:
        # token_type_hint is optional and only a hint (RFC 7009 §2.1): it is ignored.
        if not request.form.get("token"):
            raise InvalidRequestError("The 'token' parameter is missing.")

    def authenticate_token(self, request: OAuth2Request,
                           client: PartnerClient) -> PartnerToken | None:
        self.check_params(request, client)
        # Only the caller's own tokens are found: another app's token, an expired or a
        # foreign one all answer 200 and change nothing (and reveal nothing).
        return self.server.find_own_token(request.form["token"], client)

    def revoke_token(self, token: PartnerToken, request: OAuth2Request) -> None:
        token.revoked_at = utcnow()
        self.server.db.flush()


# --- the server -----------------------------------------------------------------------------


def partner_actor(app: PartnerApp) -> Actor:
    return Actor(kind="partner_app", id=app.id, org_id=app.org_id,
                 scopes=frozenset(app.scopes.split()))


class PartnerAuthorizationServer(AuthorizationServer):
    """One per request: it holds the request's database session."""

    def __init__(self, db: Session, settings: Settings, *, endpoint: str) -> None:
        super().__init__(scopes_supported=list(PARTNER_SCOPES))
        self.db = db
        self.settings = settings
        self.endpoint = endpoint
        self.looked_up: PartnerApp | None = None  # for auditing a failed client auth
        self.client_id_given = False
        self.issued_jti: str | None = None
        self.register_grant(PartnerClientCredentialsGrant)
        self.register_endpoint(PartnerRevocationEndpoint)
        self.register_token_generator("default", self.generate_access_token)

    # Authlib's hooks ------------------------------------------------------------------------

    def query_client(self, client_id: Any) -> PartnerClient | None:
        if not isinstance(client_id, str) or not client_id:
            return None
        self.client_id_given = True
        if len(client_id) > MAX_CLIENT_ID_LENGTH:
            return None
        app = self.db.scalar(sa.select(PartnerApp).where(PartnerApp.client_id == client_id))
        self.looked_up = app
        if app is None or not app.is_active:
            return None  # a disabled app is treated exactly as an unknown one
        return PartnerClient(app)

    def generate_access_token(self, grant_type: str, client: PartnerClient, user: Any = None,
                              scope: str | None = None, expires_in: int | None = None,
                              include_refresh_token: bool = False) -> dict[str, Any]:
        """Issue the JWT and keep its ``partner_token`` row (what makes it usable)."""
        scope = BearerTokenGenerator.get_allowed_scope(client, scope)
        app = client.app
        jti = uuid4().hex
        issued_at = utcnow()
        access_token, lifetime = tokens.issue(
            {"sub": app.client_id, "client_id": app.client_id, "org": str(app.org_id),
             "scope": scope, "jti": jti},
            audience=tokens.PARTNER_AUDIENCE,
            lifetime_seconds=self.settings.partner_token_minutes * 60,
        )
        self.db.add(PartnerToken(jti=jti, app_id=app.id, scope=scope, issued_at=issued_at,
                                 expires_at=issued_at + timedelta(seconds=lifetime)))
        self.db.flush()
        self.issued_jti = jti
        return {"access_token": access_token, "token_type": "Bearer", "expires_in": lifetime,
                "scope": scope}

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        # The row was written with the JWT by generate_access_token; audit the issue.
        audit.record(self.db, partner_actor(request.client.app), "oauth.token_issued",
                     object_type="partner_token", object_id=self.issued_jti,
                     details={"scope": token["scope"]})

    def find_own_token(self, token: str, client: PartnerClient) -> PartnerToken | None:
        """The caller's token, if it is one and still unrevoked (signature and expiry checked)."""
        try:
            claims = tokens.decode(token)
        except tokens.InvalidToken:
            return None
        if claims.audience != tokens.PARTNER_AUDIENCE or claims.subject != client.app.client_id:
            return None
        return self.db.scalar(sa.select(PartnerToken).where(
            PartnerToken.jti == claims.token_id, PartnerToken.app_id == client.app.id,
            PartnerToken.revoked_at.is_(None)))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        if name == "after_revoke_token":
            token: PartnerToken = kwargs["token"]
            client: PartnerClient = kwargs["client"]
            audit.record(self.db, partner_actor(client.app), "oauth.token_revoked",
                         object_type="partner_token", object_id=token.jti)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        return PartnerOAuth2Request(request)

    def create_json_request(self, request: Any) -> JsonRequest:
        raise NotImplementedError("no JSON endpoints")

    def handle_response(self, status: int, body: Any,
                        headers: list[tuple[str, str]]) -> Response:
        content = json.dumps(body, separators=(",", ":")) if isinstance(body, dict) else body
        response = Response(content, status_code=status, media_type="application/json")
        for name, value in headers:
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Response:
        if error.error == InvalidClientError.error:
            self._audit_client_failure()
            # One answer whatever went wrong: it must not tell which client ids exist.
            error = InvalidClientError(description=CLIENT_AUTH_FAILED, status_code=401)
        elif isinstance(error, UnsupportedGrantTypeError):
            # Authlib's description echoes the value sent; ours does not.
            error = OAuth2Error(error="unsupported_grant_type",
                                description=f"Only grant_type={GRANT_TYPE} is supported.")
        return super().handle_error_response(request, error)

    # ours ----------------------------------------------------------------------------------

    def error(self, error: OAuth2Error) -> Response:
        return self.handle_error_response(None, error)

    def _audit_client_failure(self) -> None:
        app = self.looked_up
        if app is None:
            reason = "unknown_client" if self.client_id_given else "no_credentials"
        else:
            reason = "app_disabled" if not app.is_active else "wrong_secret"
        audit.append(self.db, action="oauth.client_auth_failed", outcome="denied",
                     org_id=app.org_id if app else None, actor_type="anonymous",
                     object_type="partner_app" if app else None,
                     object_id=app.id if app else None,
                     details={"endpoint": self.endpoint, "reason": reason})


# --- the endpoints --------------------------------------------------------------------------


def _rate_limited(server: PartnerAuthorizationServer, bucket: str, given: OAuthInput,
                  client_id: str | None) -> Response | None:
    """429 (or 503 when the shared store is down) if the address or the client id is over
    its limit; None to go on."""
    try:
        limiter = RateLimiter(get_store(server.settings))
        wait = limiter.hit(f"{bucket}-address", normalise_address(given.address),
                           *LIMIT_PER_ADDRESS)
        if wait is None and client_id:
            wait = limiter.hit(f"{bucket}-client", client_id[:200], *LIMIT_PER_CLIENT)
    except StoreUnavailable:
        return server.handle_response(
            503, {"error": "temporarily_unavailable",
                  "error_description": "Try again in a moment."},
            [("Retry-After", "5"), ("Cache-Control", "no-store")])
    if wait is None:
        return None
    seconds = max(1, math.ceil(wait))
    return server.handle_response(
        429, {"error": "temporarily_unavailable",
              "error_description": f"Too many requests. Try again in {seconds} seconds."},
        [("Retry-After", str(seconds)), ("Cache-Control", "no-store")])


def _refusal(server: PartnerAuthorizationServer, bucket: str,
             given: OAuthInput) -> Response | None:
    """The checks both endpoints make before Authlib: transport, rate, well-formed request."""
    if not transport_allowed(server.settings, given.scheme, given.host):
        return server.error(InvalidRequestError("This endpoint requires HTTPS."))
    if given.scheme != "https" and server.settings.env != "production":
        _let_authlib_accept_plain_http()
    malformed_basic = False
    try:
        basic_id, _secret = extract_basic_authorization(given.headers)
    except UnicodeDecodeError:  # Authlib does not catch it: it would be a 500
        basic_id, malformed_basic = None, True
    limited = _rate_limited(server, bucket, given, basic_id or given.form.get("client_id"))
    if limited is not None:
        return limited
    if malformed_basic:
        return server.error(InvalidClientError(status_code=401))
    if given.problem:
        return server.error(InvalidRequestError(given.problem))
    # client_id may accompany Basic (some libraries always send it) but must agree with it.
    if basic_id and ("client_secret" in given.form
                     or given.form.get("client_id", basic_id) != basic_id):
        return server.error(InvalidRequestError(
            "Use one client authentication method: HTTP Basic or the form, not both."))
    return None


def _authlib_request(server: PartnerAuthorizationServer,
                     given: OAuthInput) -> OAuth2Request | Response:
    try:
        return server.create_oauth2_request(given)
    except InsecureTransportError:  # not reached while both transport rules agree
        return server.error(InvalidRequestError("This endpoint requires HTTPS."))


def _respond(db: Session, settings: Settings, given: OAuthInput, *, endpoint: str,
             bucket: str, answer: Callable[[PartnerAuthorizationServer, Any], Response],
             ) -> Response:
    """Shared front of both endpoints: limits, transport and request checks, then Authlib."""
    server = PartnerAuthorizationServer(db, settings, endpoint=endpoint)
    refused = _refusal(server, bucket, given)
    if refused is not None:
        return refused
    request = _authlib_request(server, given)
    if isinstance(request, Response):
        return request
    return answer(server, request)


def token_response(db: Session, settings: Settings, given: OAuthInput) -> Response:
    """``POST /oauth/token``: the client credentials grant."""
    return _respond(db, settings, given, endpoint="token", bucket="oauth-token",
                    answer=lambda server, request: server.create_token_response(request))


def revocation_response(db: Session, settings: Settings, given: OAuthInput) -> Response:
    """``POST /oauth/revoke``: RFC 7009 revocation of one of the caller's own tokens."""
    return _respond(db, settings, given, endpoint="revocation", bucket="oauth-revoke",
                    answer=lambda server, request: server.create_endpoint_response(
                        PartnerRevocationEndpoint.ENDPOINT_NAME, request))


def metadata(base_url: str, *, token_endpoint: str, revocation_endpoint: str,
             jwks_uri: str) -> dict[str, Any]:
    """Authorization server metadata (RFC 8414)."""
    return {
        "issuer": base_url.rstrip("/"),
        "token_endpoint": token_endpoint,
        "revocation_endpoint": revocation_endpoint,
        "jwks_uri": jwks_uri,
        "grant_types_supported": [GRANT_TYPE],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "scopes_supported": list(PARTNER_SCOPES),
    }
