"""A connection's OAuth2 tokens, kept only sealed by the service's `Vault` (`infra.vault`)."""

from dataclasses import dataclass, field
from datetime import datetime

from infra.vault import Vault
from models.tables import Connection


@dataclass(frozen=True)
class Tokens:
    """An OAuth2 grant's tokens: stored only sealed, never shown or logged."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime  # the access token's


def seal_tokens(vault: Vault, connection: Connection, tokens: Tokens) -> None:
    connection.sealed_access_token = vault.seal(tokens.access_token)
    connection.sealed_refresh_token = vault.seal(tokens.refresh_token)
    connection.expires_at = tokens.expires_at


def open_tokens(vault: Vault, connection: Connection) -> Tokens | None:
    """The connection's tokens, None if it has none. A key that cannot open them is a
    misconfiguration, not an expired connection: it stops the caller loudly."""
    access, refresh = connection.sealed_access_token, connection.sealed_refresh_token
    if access is None or refresh is None or connection.expires_at is None:
        return None
    return Tokens(vault.open(access), vault.open(refresh), connection.expires_at)
