"""Company API keys on the way in: `Authorization: Bearer <key>`."""

from collections.abc import Mapping

from infra.db import Database
from models.company import Caller, company_by_key
from models.errors import Unauthenticated


def bearer_key(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, key = value.partition(" ")
    return key.strip() or None if scheme.lower() == "bearer" else None


async def authenticate(db: Database, headers: Mapping[str, str]) -> Caller:
    key = bearer_key(headers)
    if key is None:
        raise Unauthenticated("Send the company API key as 'Authorization: Bearer <key>'.")
    company = await company_by_key(db, api_key=key)
    if company is None:
        raise Unauthenticated("The API key is not valid.")
    return company
