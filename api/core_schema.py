"""graphql-core's schema behind Strawberry's, for what only graphql-core can do with it:
validate a live document once for all its subscribers, and type a variable's value."""

from graphql import GraphQLSchema
from strawberry.schema.base import BaseSchema


def graphql_schema(schema: BaseSchema) -> GraphQLSchema:
    """Strawberry (0.341) has no public accessor; its maintainers point users to `_schema`
    (strawberry-graphql/strawberry#2590). The one read of it, allowed in tests/test_project.py."""
    core: GraphQLSchema = schema._schema  # type: ignore[attr-defined]
    return core
