"""Staff sign-in, the caller's account, sessions and user management."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request, Response, status

from app.core import access
from app.core.pagination import Page, PageParamsDep, SortKey, paginate
from app.db import SessionDep, UnitOfWorkRoute
from app.identity import schemas, service
from app.identity.deps import CurrentActor, EnrollingActor
from app.identity.models import AuthSession, Org, StaffUser

router = APIRouter(prefix="/api/v1", tags=["identity"], route_class=UnitOfWorkRoute)

PROBLEM = {"model": None, "content": {"application/problem+json": {}}}


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _tokens(issued: service.IssuedTokens) -> schemas.TokenOut:
    return schemas.TokenOut(access_token=issued.access_token, refresh_token=issued.refresh_token,
                            expires_in=issued.expires_in, scope=issued.scope or None)


@router.post("/auth/login", response_model=schemas.TokenOut,
             responses={401: PROBLEM, 429: PROBLEM})
def login(body: schemas.LoginIn, request: Request, db: SessionDep) -> schemas.TokenOut:
    """Sign in with email and password (and a TOTP or recovery code when MFA is on).

    An account that must use MFA but has not set it up gets a token with scope
    ``mfa:enrol`` that only the MFA routes accept, and no refresh token."""
    issued = service.login(db, email=body.email, password=body.password,
                           totp_code=body.totp_code, address=client_address(request),
                           user_agent=request.headers.get("user-agent"))
    return _tokens(issued)


@router.post("/auth/refresh", response_model=schemas.TokenOut, responses={401: PROBLEM})
def refresh(body: schemas.RefreshIn, db: SessionDep) -> schemas.TokenOut:
    """Exchange a refresh token for new tokens (the old refresh token is spent)."""
    return _tokens(service.refresh(db, refresh_token=body.refresh_token))


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def logout(actor: EnrollingActor, db: SessionDep) -> Response:
    """End the current session."""
    service.logout(db, actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/auth/accept-invitation", status_code=status.HTTP_204_NO_CONTENT,
             responses={401: PROBLEM, 422: PROBLEM})
def accept_invitation(body: schemas.AcceptInvitationIn, db: SessionDep) -> Response:
    """Choose the first password of an invited account."""
    service.accept_invitation(db, token=body.token, password=body.password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=schemas.MeOut)
async def me(actor: CurrentActor, request: Request) -> dict[str, Any]:
    """The signed-in staff member (read with the token check: no second query)."""
    access.require_user(actor)
    row = request.state.staff
    return {**row._asdict(),
            "mfa_required": access.mfa_required(row.role, row.require_mfa_for_all),
            "permissions": sorted(access.PERMISSIONS.get(row.role, ()))}


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT,
             responses={403: PROBLEM, 422: PROBLEM})
def change_password(body: schemas.PasswordChangeIn, actor: CurrentActor,
                    db: SessionDep) -> Response:
    """Change your password; your other sessions end."""
    access.require_user(actor)
    service.change_password(db, actor, current_password=body.current_password,
                            new_password=body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/me/mfa", response_model=schemas.MfaEnrolmentOut, status_code=201,
             responses={409: PROBLEM})
def start_mfa(actor: EnrollingActor, db: SessionDep) -> schemas.MfaEnrolmentOut:
    """Start TOTP enrolment: the secret and QR code are shown this once."""
    access.require_user(actor)
    enrolment = service.start_mfa_enrolment(db, actor)
    return schemas.MfaEnrolmentOut(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri,
                                   qr_svg=enrolment.qr_svg_data_uri)


@router.post("/me/mfa/confirm", response_model=schemas.RecoveryCodesOut,
             responses={409: PROBLEM, 422: PROBLEM})
def confirm_mfa(body: schemas.MfaConfirmIn, actor: EnrollingActor,
                db: SessionDep) -> schemas.RecoveryCodesOut:
    """Confirm enrolment with a first code; returns one-time recovery codes (shown once)."""
    access.require_user(actor)
    return schemas.RecoveryCodesOut(
        recovery_codes=service.confirm_mfa_enrolment(db, actor, code=body.totp_code))


@router.get("/sessions", response_model=Page[schemas.SessionOut])
def sessions(actor: CurrentActor, db: SessionDep, page: PageParamsDep) -> dict[str, Any]:
    """Your sessions still in force (API sign-ins and dashboard sessions)."""
    access.require_user(actor)
    rows, next_cursor = paginate(
        db, service.list_sessions(actor), listing="sessions",
        keys=[SortKey(AuthSession.created_at, descending=True), SortKey(AuthSession.id)],
        params=page)
    items = [schemas.SessionOut(**schemas.SessionOut.model_validate(
        {**row.model_dump(), "current": row.id == actor.session_id}).model_dump())
        for row in rows]
    return {"items": items, "next_cursor": next_cursor}


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT,
               responses={404: PROBLEM})
def revoke_session(session_id: UUID, actor: CurrentActor, db: SessionDep) -> Response:
    """End one of your sessions."""
    access.require_user(actor)
    service.revoke_own_session(db, actor, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/users", response_model=Page[schemas.UserOut])
def list_users(actor: CurrentActor, db: SessionDep, page: PageParamsDep) -> dict[str, Any]:
    """Staff of your agency (admins and supervisors)."""
    rows, next_cursor = paginate(
        db, service.readable_users(actor), listing="users",
        keys=[SortKey(StaffUser.email), SortKey(StaffUser.id)], params=page)
    return {"items": rows, "next_cursor": next_cursor}


@router.post("/users", response_model=schemas.UserCreated, status_code=201,
             responses={409: PROBLEM, 422: PROBLEM})
def create_user(body: schemas.UserCreate, actor: CurrentActor,
                db: SessionDep) -> schemas.UserCreated:
    """Add a staff member (admin). Without a password, a one-time invitation token is returned."""
    access.require(actor, "users:manage")
    org = db.get(Org, actor.org_id)
    assert org is not None
    created = service.create_user(db, actor, org=org, email=body.email,
                                  display_name=body.display_name, role=body.role,
                                  password=body.password)
    out = schemas.UserCreated.model_validate(created.user, from_attributes=True)
    out.invitation_token = created.invitation_token
    out.invitation_expires_at = created.user.invitation_expires_at
    return out


@router.get("/users/{user_id}", response_model=schemas.UserOut, responses={404: PROBLEM})
def get_user(user_id: UUID, actor: CurrentActor, db: SessionDep) -> StaffUser:
    return service.get_user(db, actor, user_id)


@router.patch("/users/{user_id}", response_model=schemas.UserOut,
              responses={404: PROBLEM, 409: PROBLEM})
def update_user(user_id: UUID, body: schemas.UserUpdate, actor: CurrentActor,
                db: SessionDep) -> StaffUser:
    """Change role, name or active status (admin); the account's sessions end on role change
    or deactivation."""
    return service.update_user(db, actor, user_id, role=body.role, is_active=body.is_active,
                               display_name=body.display_name)


@router.post("/users/{user_id}/mfa-reset", response_model=schemas.UserOut,
             responses={403: PROBLEM, 404: PROBLEM})
def reset_user_mfa(user_id: UUID, body: schemas.ReauthIn, actor: CurrentActor,
                   db: SessionDep) -> StaffUser:
    """Reset a colleague's MFA (admin, re-entering their own password); audited."""
    return service.admin_reset_mfa(db, actor, user_id, password=body.password)
