"""One extension turns every error into a stable `extensions.code` and masks the unexpected.

- AppError → its own code and extras (`field` for bad input);
- a GraphQL value that fails its scalar, enum or input type → BAD_USER_INPUT with the path
  of the offending field in `extensions.field` (e.g. `expenses.0.amount`);
- other parse and validation errors → GRAPHQL_PARSE_FAILED / GRAPHQL_VALIDATION_FAILED, and
  the query-cost limits → QUERY_TOO_COMPLEX;
- anything else is logged and answered as INTERNAL, without its message.
"""

import logging
import re
from collections.abc import Iterator

from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    ListValueNode,
    Node,
    ObjectValueNode,
    ValueNode,
    VariableDefinitionNode,
    visit,
)
from graphql.language import Visitor
from strawberry.extensions import SchemaExtension

from models.errors import AppError

log = logging.getLogger(__name__)

_VARIABLE_PATH = re.compile(r"^Variable '\$(\w+)' got invalid value .*? at '([^']+)'")
_VARIABLE = re.compile(r"^Variable '\$(\w+)'")
_MISSING_FIELD = re.compile(r"^Field '\w+\.(\w+)' of required type")
_BAD_VALUE = (
    "got invalid value",
    "Expected value of type",
    "of required type",
    "is not defined by type",
    "cannot represent",
)
_TOO_COMPLEX = ("exceeds maximum operation depth", "aliases found", "Token limit")


class ErrorCodes(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            document = self.execution_context.graphql_document
            result.errors = [_coded(error, document) for error in result.errors]


def _coded(error: GraphQLError, document: DocumentNode | None) -> GraphQLError:
    original = error.original_error
    if isinstance(original, AppError):
        return _with(error, original.message, {"code": original.code, **original.extensions})
    if original is not None:
        log.error("unexpected error at %s", error.path, exc_info=original)
        return _with(error, "Internal server error.", {"code": "INTERNAL"})
    if any(marker in error.message for marker in _TOO_COMPLEX):
        return _with(error, error.message, {"code": "QUERY_TOO_COMPLEX"})
    if any(marker in error.message for marker in _BAD_VALUE):
        return _with(
            error, error.message, {"code": "BAD_USER_INPUT", "field": _field(error, document)}
        )
    if error.message.startswith("Syntax Error"):
        return _with(error, error.message, {"code": "GRAPHQL_PARSE_FAILED"})
    return _with(error, error.message, {"code": "GRAPHQL_VALIDATION_FAILED"})


def _with(error: GraphQLError, message: str, extensions: dict[str, object]) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=extensions,
    )


def _field(error: GraphQLError, document: DocumentNode | None) -> str | None:
    """The dotted path of the value at fault, from the message (variables) or the document."""
    if match := _VARIABLE_PATH.match(error.message):
        return re.sub(r"\[(\d+)\]", r".\1", match.group(2))
    if match := _VARIABLE.match(error.message):
        return match.group(1)
    if document is None or not error.nodes:
        return None
    path = _find(document, error.nodes[0])
    if path is not None and (missing := _MISSING_FIELD.match(error.message)):
        path = f"{path}.{missing.group(1)}"
    return path


def _find(document: DocumentNode, target: Node) -> str | None:
    """Search the operation's arguments for the node an error points at."""
    found: list[str] = []

    class Finder(Visitor):
        def enter_argument(self, node: ArgumentNode, *_: object) -> None:
            path = _search(node.value, target, [node.name.value])
            if path is not None and not found:
                found.append(".".join(path))

        def enter_variable_definition(self, node: VariableDefinitionNode, *_: object) -> None:
            if node is target or node.default_value is target:
                found.append(node.variable.name.value)

    visit(document, Finder())
    return found[0] if found else None


def _search(value: ValueNode, target: Node, path: list[str]) -> list[str] | None:
    if value is target:
        return path
    if isinstance(value, ObjectValueNode):
        for field in value.fields:
            if field is target:
                return [*path, field.name.value]
            if (hit := _search(field.value, target, [*path, field.name.value])) is not None:
                return hit
    if isinstance(value, ListValueNode):
        for index, item in enumerate(value.values):
            if (hit := _search(item, target, [*path, str(index)])) is not None:
                return hit
    return None
