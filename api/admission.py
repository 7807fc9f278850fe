"""How every operation is admitted, whatever its transport: parsed within the token limit,
validated by graphql-core's rules (`InputValuesRule` for its ValuesOfCorrectTypeRule) and our
limits, each document once. Strawberry's pipeline does it through `Admission`; the live path
(`api/live_ws.py`) calls `parsed` and `validated` itself. Both code errors with `api.errors`.
"""

from collections.abc import Iterator
from contextlib import suppress
from functools import lru_cache

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    GraphQLSchema,
    ValuesOfCorrectTypeRule,
    parse,
    specified_rules,
    validate,
)
from strawberry.extensions import SchemaExtension

from api.core_schema import graphql_schema
from api.errors import InputValuesRule
from api.limits import MAX_TOKENS, MaxAliasesRule, MaxDepthRule

DOCUMENTS_KEPT = 256  # clients send the same few documents

Rules = tuple[type[ASTValidationRule], ...]
_SPECIFIED = frozenset(specified_rules)  # Strawberry's defaults, which ours replace
VALIDATION_RULES: Rules = (
    *(InputValuesRule if rule is ValuesOfCorrectTypeRule else rule for rule in specified_rules),
    MaxDepthRule,
    MaxAliasesRule,
)


@lru_cache(maxsize=DOCUMENTS_KEPT)
def parsed(query: str) -> DocumentNode:
    """The document; raises GraphQLSyntaxError, past `MAX_TOKENS` tokens too."""
    return parse(query, max_tokens=MAX_TOKENS)


@lru_cache(maxsize=DOCUMENTS_KEPT)
def validated(
    schema: GraphQLSchema, document: DocumentNode, rules: Rules = VALIDATION_RULES
) -> list[GraphQLError]:
    """What is wrong with the document (nothing: an empty list); keyed by the document
    object, which `parsed` hands out again for the same text."""
    return validate(schema, document, rules)


class Admission(SchemaExtension):
    """`parsed` and `validated` inside Strawberry's pipeline, through the hooks its docs
    name for it: a document set in `on_parse`, errors set in `on_validate`. Rules other
    extensions add (DisableIntrospection's) are kept."""

    def on_operation(self) -> Iterator[None]:
        # A document `parsed` refused is parsed again by Strawberry, to report its error
        # where extensions see it: within the same limit.
        self.execution_context.parse_options["max_tokens"] = MAX_TOKENS
        yield

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None:
            with suppress(GraphQLError):  # Strawberry's own parse reports it
                context.graphql_document = parsed(context.query)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None
        added = tuple(rule for rule in context.validation_rules if rule not in _SPECIFIED)
        context.pre_execution_errors = validated(
            graphql_schema(context.schema), context.graphql_document, VALIDATION_RULES + added
        )
        yield
