"""Attachment downloads: short-lived signed links, and the route that answers them.

A link carries a token sealed with the service's key, naming the company and the attachment
and stamped with when it was made: it answers for that one file until `DOWNLOAD_URL_SECONDS`
have passed, and for nothing else. The file streams from storage a chunk at a time.
"""

from urllib.parse import quote

from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from infra.services import Services
from infra.settings import Settings
from infra.vault import Vault
from models.attachments import get_attachment

ROUTE = "/attachments/{attachment_id}"


def public_base(connection: HTTPConnection, settings: Settings) -> str:
    """Where this client reaches the service, for the addresses handed to it: `PUBLIC_URL`
    when set (behind a proxy that rewrites the address), else the scheme, host and port the
    client used (the served address when it sent no `Host`); WebSocket clients get HTTP's."""
    if settings.public_url is not None:
        return settings.public_url.rstrip("/")
    url = connection.base_url
    scheme = {"ws": "http", "wss": "https"}.get(url.scheme, url.scheme)
    return str(url.replace(scheme=scheme)).rstrip("/")


def download_url(base: str, vault: Vault, company_id: str, attachment_id: str) -> str:
    """A link to the company's file, under `base` (see `public_base`)."""
    token = vault.sign(f"{company_id}/{attachment_id}")
    return f"{base}{ROUTE.format(attachment_id=attachment_id)}?token={token}"


async def download(request: Request) -> Response:
    services: Services = request.state.services
    attachment_id = request.path_params["attachment_id"]
    signed = services.vault.verify(
        request.query_params.get("token", ""),
        ttl_seconds=services.settings.download_url_seconds,
    )
    company_id, _, signed_id = (signed or "").partition("/")
    if signed is None or signed_id != attachment_id:
        return PlainTextResponse("This link is invalid or has expired: ask for a new one.", 403)
    found = await get_attachment(services, company_id=company_id, attachment_id=attachment_id)
    if found is None:
        return PlainTextResponse("Not Found", 404)
    key = services.storage.key(found.company_id, found.sha256)
    return StreamingResponse(
        services.storage.chunks(key),
        media_type=found.content_type,
        headers={
            "Content-Length": str(found.size),
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(found.file_name)}",
            "Cache-Control": "private, no-store",
        },
    )
