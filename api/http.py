"""GraphQL over HTTP: what a request body may be, and how an answer is typed.

- A body is JSON in UTF-8 (RFC 8259), an object, and holds no character that no text column
  can store (NUL, or an unpaired UTF-16 surrogate escape). Anything else is a client error,
  answered 400 with a GraphQL-shaped JSON error, never a 5xx.
- A client that asks for `application/graphql-response+json` (the GraphQL-over-HTTP spec's
  media type) gets it: a request error (a document that fails to parse or validate, or
  variables that fail their types) is then 400 with no `data` key. Clients that accept
  `application/json`, or anything, get `application/json` and 200 for request errors, as
  before the spec.
"""

import json
import math
import re
from collections.abc import Mapping

from cross_web import HTTPException
from starlette.responses import Response
from strawberry.types import ExecutionResult

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    411: "LENGTH_REQUIRED",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED",
}


def decode_body(data: str | bytes, *, what: str = "The request body") -> dict[str, object]:
    """The request's JSON object, or HTTP 400 saying what is wrong with it (`what`: the
    body, or the part of a multipart body that held it)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise HTTPException(400, f"{what} is not valid UTF-8.") from None
    try:
        parsed = json.loads(text)
        unstorable = _has_unstorable(parsed)  # recursive too: within the guard
    except RecursionError:
        raise HTTPException(400, f"{what} is nested too deeply.") from None
    except ValueError as exc:  # JSONDecodeError, and ints over Python's digit limit
        raise HTTPException(400, f"{what} is not valid JSON: {exc}.") from None
    if not isinstance(parsed, dict):
        raise HTTPException(400, f"{what} must be a JSON object.")
    if unstorable:  # no text column (PostgreSQL's least of all) can hold one
        raise HTTPException(
            400, f"{what} contains a NUL character or an unpaired surrogate (\\ud800-\\udfff)."
        )
    return parsed


def _has_unstorable(value: object) -> bool:
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_unstorable(k) or _has_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unstorable(item) for item in value)
    return False


def response_type(headers: Mapping[str, str]) -> str:
    """`application/graphql-response+json` when the client names it at least as high as
    `application/json`; else `application/json` (for `*/*` and no Accept too, as the spec
    says until its watershed)."""
    ranks = dict(_media_ranges(headers.get("accept", "")))
    wanted = ranks.get(GRAPHQL_RESPONSE, 0.0)
    return GRAPHQL_RESPONSE if wanted > 0 and wanted >= ranks.get(JSON, 0.0) else JSON


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((media.lower(), quality if math.isfinite(quality) else 0.0))
    return ranges


def is_request_error(result: ExecutionResult) -> bool:
    """The operation never ran: it failed to parse or validate, or its variables failed
    their types. Errors raised by a field carry its path; these carry none."""
    errors = result.errors or []
    return result.data is None and bool(errors) and all(e.path is None for e in errors)


def error_response(
    status: int,
    message: str,
    *,
    media_type: str = JSON,
    code: str | None = None,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A GraphQL-shaped error for a request that no operation answers; `field` names the
    part of the request at fault, where one is."""
    extensions = {"code": code or _CODES.get(status, "BAD_REQUEST")}
    if field is not None:
        extensions["field"] = field
    error = {"message": message, "extensions": extensions}
    return Response(json.dumps({"errors": [error]}), status, headers, media_type=media_type)
