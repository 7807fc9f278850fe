"""The Strawberry schema: root types plus the extensions that guard every operation."""

from collections.abc import Iterator
from contextlib import suppress
from functools import lru_cache

import strawberry
from graphql import GraphQLError, parse
from strawberry.extensions import (
    DisableIntrospection,
    MaxTokensLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.tools import merge_types

from api.alerts import AlertQuery, AlertSubscription
from api.errors import ErrorCodes
from api.limits import MAX_TOKENS
from api.mutations import Mutation
from api.queries import Query
from api.rules import ValidationRules
from api.scalars import SCALARS
from api.stats import StatsQuery
from api.subscriptions import Subscription
from api.tracing import OperationSpans
from api.webhooks import WebhookMutation, WebhookQuery


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: object = None) -> None:
        """Silence Strawberry's own logging: `ErrorCodes` logs what is unexpected, once."""


_parse = lru_cache(maxsize=256)(parse)


class ParseOnce(SchemaExtension):
    """Clients send the same few documents: parse each once, so that `ValidationCache` (keyed
    by the document object) validates each once too. A document that fails to parse is left
    to Strawberry's own parse, which reports the error where `ErrorCodes` gives it its code
    (Strawberry's ParserCache raises it outside that step)."""

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            with suppress(GraphQLError):
                context.graphql_document = _parse(context.query, **context.parse_options)
        yield


def build_schema(*, introspection: bool = True, tracing: bool = False) -> Schema:
    """The schema; production may refuse introspection (`INTROSPECTION=false`). With
    `tracing`, each operation is a span (`api.tracing.OperationSpans`)."""
    traced = [OperationSpans] if tracing else []
    return Schema(
        query=merge_types("Query", (Query, AlertQuery, StatsQuery, WebhookQuery)),
        mutation=merge_types("Mutation", (Mutation, WebhookMutation)),
        subscription=merge_types("Subscription", (Subscription, AlertSubscription)),
        scalar_overrides=SCALARS,
        extensions=[
            ErrorCodes,
            ValidationRules,
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            *([] if introspection else [DisableIntrospection]),
            ParseOnce,
            ValidationCache,
            *traced,
        ],
    )


schema = build_schema()


def sdl() -> str:
    """The schema as committed in `schema.graphql`."""
    return schema.as_str() + "\n"
