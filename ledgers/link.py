"""Link: connecting a company to a real ledger through the ledger's OAuth2 authorization flow.

`start_link` returns the ledger's authorization URL with a random `state` bound to the
company (kept in Redis for `LINK_SECONDS`, usable once) and, where the ledger supports it,
a PKCE challenge (Xero; QuickBooks Online authenticates the code exchange with the client
secret alone). The ledger sends the browser back to `CALLBACK` on the address the API client
used (or `PUBLIC_URL`), where `finish_link` exchanges the code, reads the tenant (QuickBooks
passes its realm id in the callback; Xero lists it at `/connections`), seals the tokens and
marks the connection ACTIVE.
Token code is Authlib's OAuth2 client, not ours.
"""

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import httpx2
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client

from infra import keys
from infra.services import Services
from infra.settings import Settings
from models.connections import reconnected
from models.enums import Provider
from models.errors import InvalidInput, LedgerError, SyncErrorCode
from models.secrets import Tokens
from models.tables import Connection

LINK_SECONDS = 600
CALLBACK = "/link/callback"  # the service's route for the ledger's redirect
XERO_SCOPE = "offline_access accounting.transactions accounting.settings accounting.contacts"
QUICKBOOKS_SCOPE = "com.intuit.quickbooks.accounting"


@dataclass(frozen=True)
class OAuthApp:
    """Our registered app at one ledger: its credentials and endpoints."""

    provider: Provider
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    scope: str
    pkce: bool


def oauth_app(settings: Settings, provider: Provider) -> OAuthApp:
    if provider is Provider.XERO:
        client_id, secret = settings.xero_client_id, settings.xero_client_secret
        urls = settings.xero_auth_url, settings.xero_token_url
        scope, pkce = XERO_SCOPE, True
    elif provider is Provider.QUICKBOOKS:
        client_id, secret = settings.quickbooks_client_id, settings.quickbooks_client_secret
        urls = settings.quickbooks_auth_url, settings.quickbooks_token_url
        scope, pkce = QUICKBOOKS_SCOPE, False
    else:
        raise InvalidInput(f"provider: {provider} connects without Link", field="provider")
    if not client_id or secret is None:
        name = provider.upper()
        raise InvalidInput(
            f"provider: this service has no {provider} app ({name}_CLIENT_ID and "
            f"{name}_CLIENT_SECRET are not set)",
            field="provider",
        )
    return OAuthApp(provider, client_id, secret.get_secret_value(), *urls, scope, pkce)


def _client(app: OAuthApp, redirect_uri: str | None = None) -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        app.client_id,
        app.client_secret,
        scope=app.scope,
        redirect_uri=redirect_uri,
        code_challenge_method="S256" if app.pkce else None,
        timeout=30,
    )


@dataclass(frozen=True)
class LinkStart:
    authorization_url: str
    expires_at: datetime


async def start_link(
    services: Services, *, company_id: str, provider: Provider, base_url: str
) -> LinkStart:
    """The URL to send the company's user to; it works once, for `LINK_SECONDS`. The ledger
    sends the user back to `<base_url>/link/callback` (registered with the ledger's app)."""
    app = oauth_app(services.settings, provider)
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48) if app.pkce else None
    redirect_uri = f"{base_url}{CALLBACK}"
    async with _client(app, redirect_uri) as client:
        url, _ = client.create_authorization_url(
            app.authorize_url, state=state, code_verifier=verifier
        )
    pending = {
        "companyId": company_id,
        "provider": provider,
        "verifier": verifier,
        "redirectUri": redirect_uri,  # the code exchange must name the same one
    }
    await services.redis.set(keys.link_state(state), json.dumps(pending), ex=LINK_SECONDS)
    return LinkStart(url, datetime.now(UTC) + timedelta(seconds=LINK_SECONDS))


class LinkFailed(Exception):
    """The callback cannot complete: say why to the person in the browser."""


async def finish_link(
    services: Services, *, state: str, code: str, realm_id: str | None
) -> Connection:
    """Exchange the code for tokens and connect the company whose `state` this is."""
    raw = await services.redis.getdel(keys.link_state(state)) if state else None
    if raw is None:
        raise LinkFailed("This link is unknown, used or expired: start connecting again.")
    pending = json.loads(raw)
    provider = Provider(pending["provider"])
    app = oauth_app(services.settings, provider)
    try:
        async with _client(app, pending["redirectUri"]) as client:
            token = await client.fetch_token(
                app.token_url, code=code, code_verifier=pending["verifier"]
            )
    except (OAuthError, httpx2.HTTPError, OSError) as exc:
        raise LinkFailed(f"{provider} refused the authorization ({exc}).") from exc
    tokens = _tokens(token)
    tenant_id = (
        realm_id if provider is Provider.QUICKBOOKS else await _xero_tenant(services, tokens)
    )
    if not tenant_id:
        raise LinkFailed(f"{provider} named no organisation to connect.")
    return await reconnected(
        services,
        company_id=pending["companyId"],
        tokens=tokens,
        provider=provider,
        tenant_id=tenant_id,
    )


async def _xero_tenant(services: Services, tokens: Tokens) -> str | None:
    """The organisation this grant reaches: Xero lists them at `/connections`; the newest is
    the one just authorised."""
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.get(
                services.settings.xero_api_url.rstrip("/") + "/connections",
                headers={"authorization": f"Bearer {tokens.access_token}"},
            )
    except httpx.HTTPError as exc:
        raise LinkFailed(f"Xero's connections could not be read ({exc!r}).") from exc
    if not response.is_success:
        raise LinkFailed(f"Xero answered HTTP {response.status_code} for its connections.")
    tenants = sorted(response.json(), key=lambda t: t.get("createdDateUtc") or "")
    return str(tenants[-1]["tenantId"]) if tenants else None


async def refresh_grant(settings: Settings, provider: Provider, tokens: Tokens | None) -> Tokens:
    """New tokens for the refresh token (both ledgers rotate it: the old one stops working)."""
    if tokens is None:
        raise LedgerError(SyncErrorCode.CONNECTION_EXPIRED, "The connection holds no tokens.")
    app = oauth_app(settings, provider)
    try:
        async with _client(app) as client:
            token = await client.refresh_token(app.token_url, refresh_token=tokens.refresh_token)
    except OAuthError as exc:
        raise LedgerError(
            SyncErrorCode.CONNECTION_EXPIRED, f"{provider} refused the refresh token ({exc})."
        ) from exc
    except (httpx2.HTTPError, OSError) as exc:  # Authlib's client is httpx2's
        raise LedgerError(
            SyncErrorCode.PROVIDER_ERROR, f"{provider}'s token endpoint failed ({exc!r})."
        ) from exc
    return _tokens(token)


def _tokens(token: dict[str, Any]) -> Tokens:  # Any: the token endpoint's JSON
    return Tokens(
        access_token=token["access_token"],
        refresh_token=token["refresh_token"],
        expires_at=datetime.now(UTC) + timedelta(seconds=int(token.get("expires_in", 1800))),
    )
