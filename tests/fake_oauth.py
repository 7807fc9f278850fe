"""The authorization-server half of the fake ledgers, as Xero and Intuit document theirs.

`GET /authorize` stands for the user's consent: it redirects at once to the `redirect_uri`
with a one-time `code` and the client's `state` (plus whatever `extra` the ledger adds, such
as QuickBooks' `realmId`). `POST /token` takes HTTP Basic client credentials and either
`grant_type=authorization_code` (checking the PKCE verifier when a challenge was given) or
`grant_type=refresh_token`: refresh tokens rotate, each usable once. Access tokens expire
after `ACCESS_SECONDS`, or when a test expires them.
"""

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

ACCESS_SECONDS = 1800
CLIENT_ID, CLIENT_SECRET = "test-client", "test-secret"


@dataclass
class FakeAuthorizationServer:
    extra: dict[str, str] = field(default_factory=dict)  # added to the redirect back
    codes: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # code: uri, challenge
    access: dict[str, float] = field(default_factory=dict)  # token: expiry (time.time())
    refresh: set[str] = field(default_factory=set)
    refreshes: int = 0
    challenges: list[str | None] = field(default_factory=list)  # every challenge received

    def routes(self) -> list[Route]:
        return [
            Route("/authorize", self.authorize),
            Route("/token", self.token, methods=["POST"]),
        ]

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ")
        return header.startswith("Bearer ") and self.access.get(token, 0) > time.time()

    def expire_access_tokens(self) -> None:
        self.access = dict.fromkeys(self.access, 0.0)

    def revoke(self) -> None:
        """Every grant gone, as when the user disconnects the app: only Link helps then."""
        self.expire_access_tokens()
        self.refresh.clear()

    async def authorize(self, request: Request) -> Response:
        params = request.query_params
        if params.get("client_id") != CLIENT_ID or params.get("response_type") != "code":
            return JSONResponse({"error": "invalid_request"}, 400)
        challenge = params.get("code_challenge")
        self.challenges.append(challenge)
        code = secrets.token_urlsafe(16)
        self.codes[code] = (params["redirect_uri"], challenge)
        back = {"code": code, "state": params["state"], **self.extra}
        return RedirectResponse(f"{params['redirect_uri']}?{urlencode(back)}", 302)

    async def token(self, request: Request) -> Response:
        if request.headers.get("authorization") != _basic(CLIENT_ID, CLIENT_SECRET):
            return JSONResponse({"error": "invalid_client"}, 401)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            issued = self.codes.pop(str(form.get("code")), None)
            if issued is None or issued[0] != form.get("redirect_uri"):
                return JSONResponse({"error": "invalid_grant"}, 400)
            challenge = issued[1]
            if challenge is not None and challenge != _s256(str(form.get("code_verifier", ""))):
                return JSONResponse({"error": "invalid_grant"}, 400)
        elif grant == "refresh_token":
            token = str(form.get("refresh_token"))
            if token not in self.refresh:
                return JSONResponse({"error": "invalid_grant"}, 400)
            self.refresh.discard(token)
            self.refreshes += 1
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.access[access] = time.time() + ACCESS_SECONDS
        self.refresh.add(refresh)
        return JSONResponse(
            {
                "access_token": access,
                "refresh_token": refresh,
                "token_type": "Bearer",
                "expires_in": ACCESS_SECONDS,
            }
        )


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
