"""Browser login through the hub (OAuth 2 authorization code), ending in a session cookie.

``/login`` sends the browser to the hub's authorize URL with a random ``state`` kept in a
short-lived cookie; ``/oauth_callback`` checks that state, exchanges the code for a hub
token with :class:`jupyterhub.services.auth.HubOAuth` and stores the token in the signed,
HTTP-only session cookie that :mod:`.auth` reads. The token itself is checked with the hub
on use, like any other hub token.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse

from .auth import COOKIE_NAME
from .errors import ApiError

__all__ = ["router"]

router = APIRouter(tags=["login"], include_in_schema=False)
_STATE_COOKIE = "adit-workbench-oauth-state"


@router.get("/login")
def login(request: Request) -> RedirectResponse:
    """Start the hub login."""
    hub_auth = request.app.state.service.auth.hub_auth
    state = secrets.token_urlsafe(24)
    query = urlencode(
        {
            "client_id": hub_auth.oauth_client_id,
            "redirect_uri": hub_auth.oauth_redirect_uri,
            "response_type": "code",
            "state": state,
        }
    )
    response = RedirectResponse(f"{hub_auth.oauth_authorization_url}?{query}", status_code=302)
    secure = request.url.scheme == "https"
    response.set_cookie(_STATE_COOKIE, state, max_age=600, httponly=True, secure=secure,
                        samesite="lax")  # fmt: skip
    return response


@router.get("/oauth_callback")
def oauth_callback(
    request: Request,
    code: Annotated[str, Query(max_length=200)],
    state: Annotated[str, Query(max_length=200)],
) -> RedirectResponse:
    """Finish the hub login: set the session cookie and go to the API's documentation."""
    service = request.app.state.service
    expected = request.cookies.get(_STATE_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, state):
        raise ApiError(400, "InvalidState", "login state mismatch: start again at /login")
    try:
        token = service.auth.hub_auth.token_for_code(code, sync=True)
    except Exception as exc:
        what = type(exc).__name__
        raise ApiError(401, "Unauthenticated", f"the hub refused the login ({what})") from None
    base = request.url.path.rsplit("/oauth_callback", 1)[0]
    response = RedirectResponse(f"{base}/docs", status_code=302)
    secure = request.url.scheme == "https"
    response.set_cookie(COOKIE_NAME, service.auth.seal(token), httponly=True, secure=secure,
                        samesite="lax", path=base or "/")  # fmt: skip
    response.delete_cookie(_STATE_COOKIE)
    return response
