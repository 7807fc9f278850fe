"""The Strawberry schema: root types plus the extensions that guard every operation."""

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ValidationCache,
)

from api.errors import ErrorCodes
from api.limits import MAX_ALIASES, MAX_TOKENS, MaxDepthRule
from api.mutations import Mutation
from api.queries import Query
from api.scalars import SCALARS
from api.subscriptions import Subscription


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: object = None) -> None:
        """Silence Strawberry's own logging: `ErrorCodes` logs what is unexpected, once."""


def build_schema(*, introspection: bool = True) -> Schema:
    """The schema; production may refuse introspection (`INTROSPECTION=false`)."""
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        scalar_overrides=SCALARS,
        extensions=[
            ErrorCodes,
            lambda: AddValidationRules([MaxDepthRule]),
            lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            *([] if introspection else [DisableIntrospection]),
            # Clients send the same few documents: validate each once. (Strawberry's ParserCache
            # would raise syntax errors outside the step that gives them their code.)
            ValidationCache,
        ],
    )


schema = build_schema()


def sdl() -> str:
    """The schema as committed in `schema.graphql`."""
    return schema.as_str() + "\n"
