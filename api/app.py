"""The Starlette application: GraphQL (HTTP, WebSocket, GraphiQL), health and readiness."""

import gc
import html
import logging
import math
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.types import QueryParams
from strawberry.schema.base import BaseSchema
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types import ExecutionResult

from api.auth import authenticate
from api.context import Context, Runtime
from api.downloads import ROUTE as DOWNLOAD_ROUTE
from api.downloads import download, public_base
from api.http import GRAPHQL_RESPONSE, decode_body, error_response, is_request_error, response_type
from api.hub import Hub
from api.live_ws import LiveTransportWSHandler, Pings
from api.schema import build_schema, schema
from api.throttle import seconds_until_allowed
from api.tracing import request_span
from api.trusted import NOT_FOUND, TrustedDocuments, UnknownDocument
from api.uploads import BadMultipart, operation_with_files
from infra import tracing
from infra.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from infra.metrics import exposition, process_exited
from infra.services import Services
from infra.settings import Settings
from ledgers.link import CALLBACK as LINK_CALLBACK
from ledgers.link import LinkFailed, finish_link
from models.errors import Unauthenticated
from models.stats import service_state

log = logging.getLogger(__name__)

_COMPANY = "sync2books.company"
STATIC = Path(__file__).parent / "static"
SUBSCRIPTION_PROTOCOLS = (  # WebSocket's two, and over plain HTTP graphql-sse's and Apollo's
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    GRAPHQL_SSE_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)


class GraphQLApp(GraphQL[Context, None]):
    """Strawberry's ASGI app, with the company key checked before any operation runs."""

    graphql_transport_ws_handler_class = LiveTransportWSHandler

    def __init__(
        self, schema: BaseSchema, *, settings: Settings, trusted: TrustedDocuments, **options: Any
    ) -> None:
        super().__init__(schema, **options)
        self.settings = settings
        self.trusted = trusted  # documents by hash, and TRUSTED_DOCUMENTS=only
        self.pings = Pings(settings.ws_keep_alive_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        if not _is_operation(request):
            page = await self.render_graphql_ide(request) if self.graphql_ide else None
            await (page or PlainTextResponse("Not Found", 404))(scope, receive, send)
            return
        with request_span(request):
            await self._answer(request, scope, receive, send)

    async def _answer(self, request: Request, scope: Scope, receive: Receive, send: Send) -> None:
        response = await _admit(request, self.settings)
        try:
            if response is None:
                media_type = response_type(request.headers)
                try:
                    response = await self.run(request)
                except HTTPException as exc:  # Strawberry's answer would be plain text
                    allow = {"Allow": "POST"} if exc.status_code == 405 else None
                    response = error_response(
                        exc.status_code, exc.reason, media_type=media_type, headers=allow
                    )
                except BadMultipart as exc:
                    response = error_response(
                        400, exc.message, media_type=media_type, field=exc.field
                    )
                except UnknownDocument as exc:
                    response = error_response(400, str(exc), media_type=media_type, code=NOT_FOUND)
            await response(scope, receive, send)
        finally:
            await request.close()  # an upload's spooled files

    def should_render_graphql_ide(self, request: Any) -> bool:
        """Never for an operation: `__call__` serves GraphiQL to a GET that is not one."""
        return False

    async def render_graphql_ide(self, request: Request) -> Response:
        """Our GraphiQL page, whose assets the service serves itself (no CDN)."""
        return FileResponse(STATIC / "graphiql" / "index.html")

    def parse_json(self, data: str | bytes) -> object:
        """The body, with the document's text where it named a trusted document's hash."""
        return self.trusted.resolve(decode_body(data))

    def parse_query_params(self, params: QueryParams) -> dict[str, Any]:
        """A GET's parameters, as a body's (`documentId` too)."""
        return self.trusted.resolve(super().parse_query_params(params))

    async def parse_multipart(self, request: AsyncHTTPRequestAdapter) -> dict[str, Any]:
        """The spec's body read by `api.uploads`, whose every error_response is a JSON 400; broken
        framing (Starlette answers it in plain text) is one of them."""
        try:
            form = await request.get_form_data()
        except (StarletteHTTPException, MultiPartException) as exc:
            detail = exc.detail if isinstance(exc, StarletteHTTPException) else exc.message
            raise BadMultipart(f"The multipart body is malformed: {detail}") from None
        return operation_with_files(form.form)

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Strawberry checks `query`, `variables` and `extensions`; `operationName` too here."""
        parsed = await super().parse_http_body(request)
        if not isinstance(parsed, list) and not isinstance(parsed.operation_name, str | None):
            message = "The GraphQL operation's `operationName` must be a string or null."
            raise HTTPException(400, message)
        return parsed

    async def execute_single(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        """A mutation sent by GET is 405 (with `Allow: POST`), as GraphQL over HTTP says."""
        try:
            return await super().execute_single(*args, **kwargs)
        except HTTPException as exc:
            if isinstance(exc.__cause__, InvalidOperationTypeError):
                raise HTTPException(405, exc.reason) from exc
            raise

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = response_type(request.headers)
        return sub_response

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        body = await super().process_result(request, result)
        if response_type(request.headers) == GRAPHQL_RESPONSE and is_request_error(result):
            del body["data"]  # the spec's sign that the operation never ran
        return body

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        """JSON in the type the client asked for; 400 for a request error when that type is
        `application/graphql-response+json` (only then is `data` missing)."""
        failed = isinstance(response_data, dict) and "data" not in response_data
        return Response(
            self.encode_json(response_data),
            sub_response.status_code or (400 if failed else 200),
            {k: v for k, v in sub_response.headers.items() if k != "content-type"},
            media_type=sub_response.media_type,
        )

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        return Context(
            services=_services(request),
            hub=request.state.hub,
            ledger_for=request.state.ledgers,
            base_url=public_base(request, self.settings),
            caller=request.scope.get(_COMPANY),  # over WebSocket, set by on_ws_connect
            socket=request if isinstance(request, WebSocket) else None,
        )

    async def on_ws_connect(self, context: Context) -> dict[str, object]:
        """The key comes in `connection_init`'s payload, under `Authorization`."""
        params = context.connection_params or {}
        value = params.get("Authorization", params.get("authorization"))
        try:
            if not isinstance(value, str):
                raise Unauthenticated("Send 'Authorization: Bearer <key>' in connection_init.")
            context.caller = await authenticate(context.services.db, {"authorization": value})
        except Unauthenticated as exc:
            raise ConnectionRejectionError({"message": exc.message, "code": exc.code}) from None
        if context.socket is not None:
            context.hub.watch_key(context.caller.api_key_hash, context.socket)
        return {"companyId": context.caller.id}


def _is_operation(request: Request) -> bool:
    """Every POST is one; a GET is one only when it carries a query or a trusted document's
    hash (else it asks for GraphiQL)."""
    asked = request.query_params
    return request.method != "GET" or "query" in asked or "documentId" in asked


async def _admit(request: Request, settings: Settings) -> Response | None:
    """Refuse what must not reach an operation: a body without a length or too large, a
    missing or wrong key, a key over its rate. Admitted, the scope names the company."""
    services = _services(request)
    length = request.headers.get("content-length", "")
    if request.method == "POST" and not length.isdecimal():
        return _refused(request, 411, "LENGTH_REQUIRED", "Send the body with a Content-Length.")
    largest = settings.max_body_bytes
    if request.headers.get("content-type", "").startswith("multipart/form-data"):  # uploads
        largest += settings.max_upload_bytes * settings.max_files_per_request
    if length.isdecimal() and int(length) > largest:
        message = f"The request body is over {largest} bytes."
        return _refused(request, 413, "PAYLOAD_TOO_LARGE", message)
    try:
        company = await authenticate(services.db, request.headers)
    except Unauthenticated as exc:
        return _refused(request, 401, exc.code, exc.message, {"WWW-Authenticate": "Bearer"})
    per_minute = settings.api_rate_limit_per_minute
    wait = await seconds_until_allowed(
        services.redis, key_hash=company.api_key_hash, per_minute=per_minute
    )
    if wait:
        message = f"This key made over {per_minute} requests this minute."
        retry_after = str(math.ceil(wait))
        return _refused(request, 429, "RATE_LIMITED", message, {"Retry-After": retry_after})
    request.scope[_COMPANY] = company
    return None


def _services(request: Request | WebSocket) -> Services:
    services: Services = request.state.services
    return services


def _refused(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    """A GraphQL-shaped error answered before any operation runs."""
    media_type = response_type(request.headers)
    return error_response(status, message, media_type=media_type, code=code, headers=headers)


MONITOR_POLICY = (  # the page runs only its own files, and talks only to this service
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


async def monitor(_: Request) -> Response:
    """The live monitor page; it asks for the company key itself (see static/monitor)."""
    return FileResponse(
        STATIC / "monitor" / "index.html", headers={"content-security-policy": MONITOR_POLICY}
    )


async def home(_: Request) -> Response:
    """Where a browser lands first: what is served here, linked."""
    return FileResponse(STATIC / "index.html", headers={"content-security-policy": MONITOR_POLICY})


async def favicon(_: Request) -> Response:
    """For browsers that ask /favicon.ico of a page that names no icon (our pages name it)."""
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


async def link_callback(request: Request) -> Response:
    """Where a ledger sends its user back after the Link flow: connect the company, or say
    plainly why not. No API key here: the single-use `state` names the company."""
    params = request.query_params
    if "error" in params:
        reason = params.get("error_description") or params["error"]
        return _page(400, "Not connected", f"The ledger did not grant access: {reason}.")
    try:
        connection = await finish_link(
            _services(request),
            state=params.get("state", ""),
            code=params.get("code", ""),
            realm_id=params.get("realmId"),
        )
    except LinkFailed as exc:
        return _page(400, "Not connected", str(exc))
    return _page(200, "Connected", f"Connected to {connection.provider}. You can close this page.")


def _page(status: int, title: str, message: str) -> Response:
    body = (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></html>"
    )
    return HTMLResponse(body, status)


async def metrics(request: Request) -> Response:
    """Prometheus text: every process's counters, and the service's state read just now."""
    services = _services(request)
    try:
        state = await service_state(services.db, services.redis)
    except Exception:  # a scrape still gets the counters; readiness reports the outage
        log.warning("metrics: the service's state could not be read", exc_info=True)
        state = None
    return Response(exposition(services.settings, state), media_type=METRICS_CONTENT_TYPE)


async def healthz(_: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """Ready only when the database and Redis both answer."""
    services = _services(request)
    checks = {
        "database": await _answer(services.db.ping()),
        "redis": await _answer(services.redis.ping()),
    }
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(checks, status_code=200 if ready else 503)


async def _answer(probe: Awaitable[object]) -> str:
    """ "ok", or the name of what went wrong: any failure means not ready."""
    try:
        await probe
    except Exception as exc:  # reported, not raised: readiness is the answer
        return type(exc).__name__
    return "ok"


def _schema(settings: Settings, trusted: TrustedDocuments) -> BaseSchema:
    """The module's schema, unless settings or tracing (on before the app is made) ask for
    other extensions."""
    traced = tracing.enabled()
    if settings.introspection and not traced and not trusted.only:
        return schema
    rules = [trusted.rule()] if trusted.only else []
    return build_schema(introspection=settings.introspection, tracing=traced, rules=rules)


class App(Starlette):
    """Starlette, but a WebSocket to /graphql goes straight to GraphQL: its routing and
    middleware would stay suspended beneath every open subscription (about 3 KiB each) and
    do nothing for it (they act on HTTP, or on exceptions Strawberry does not raise)."""

    def __init__(self, graphql: "GraphQLApp", **options: Any) -> None:
        super().__init__(**options)
        self.graphql = graphql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/graphql":
            scope["app"] = self
            await self.graphql(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings, *, runtime: Runtime) -> Starlette:
    """The app; `runtime` opens the process's services (and, embedded, Redis and the worker)."""
    trusted = TrustedDocuments.load(settings)
    graphql = GraphQLApp(
        _schema(settings, trusted),
        settings=settings,
        trusted=trusted,
        graphql_ide="graphiql" if settings.graphiql else None,
        multipart_uploads_enabled=True,  # only for requests whose key `_admit` accepted
        keep_alive=True,  # "ka" on graphql-ws; `Pings` pings graphql-transport-ws at that pace
        keep_alive_interval=settings.ws_keep_alive_seconds,
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
        subscription_protocols=SUBSCRIPTION_PROTOCOLS,
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, object]]:
        async with (
            runtime(settings) as (services, ledgers),
            Hub.running(
                services.db, services.redis_url, check_seconds=settings.live_check_seconds
            ) as hub,
        ):
            # What start-up made lives as long as the process: out of the collector's sight,
            # a full collection no longer walks it in the middle of a request (p99 of a
            # 1,000-node page: 460 → 280 ms on the bench machine).
            gc.freeze()
            yield {"services": services, "ledgers": ledgers, "hub": hub}
        process_exited(settings)
        tracing.flush()  # uvicorn ends the process by its signal once this returns

    return App(
        graphql,
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            Route("/monitor", monitor),
            Route("/favicon.ico", favicon),
            Route("/", home),
            Route(DOWNLOAD_ROUTE, download),
            Route(LINK_CALLBACK, link_callback),
            Route("/metrics", metrics),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        lifespan=lifespan,
    )
