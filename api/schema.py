"""The Strawberry schema: root types plus the extensions that guard every operation."""

from collections.abc import Sequence

import strawberry
from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import AddValidationRules, DisableIntrospection
from strawberry.tools import merge_types

from api.admission import Admission
from api.alerts import AlertQuery, AlertSubscription
from api.errors import ErrorCodes
from api.mutations import Mutation
from api.queries import Query
from api.scalars import SCALARS
from api.stats import StatsQuery
from api.subscriptions import Subscription
from api.tracing import OperationSpans
from api.webhooks import WebhookMutation, WebhookQuery


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: object = None) -> None:
        """Silence Strawberry's own logging: `ErrorCodes` logs what is unexpected, once."""


def build_schema(
    *,
    introspection: bool = True,
    tracing: bool = False,
    rules: Sequence[type[ASTValidationRule]] = (),
) -> Schema:
    """The schema; production may refuse introspection (`INTROSPECTION=false`). With
    `tracing`, each operation is a span (`api.tracing.OperationSpans`). `rules` are more
    validation rules (`api.trusted`'s), which every transport's admission applies."""
    traced = [OperationSpans] if tracing else []
    return Schema(
        query=merge_types("Query", (Query, AlertQuery, StatsQuery, WebhookQuery)),
        mutation=merge_types("Mutation", (Mutation, WebhookMutation)),
        subscription=merge_types("Subscription", (Subscription, AlertSubscription)),
        scalar_overrides=SCALARS,
        extensions=[
            ErrorCodes,
            Admission,
            *([] if introspection else [DisableIntrospection]),
            *([lambda: AddValidationRules(list(rules))] if rules else []),
            *traced,
        ],
    )


schema = build_schema()


def sdl() -> str:
    """The schema as committed in `schema.graphql`."""
    return schema.as_str() + "\n"
