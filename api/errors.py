"""One extension turns every error into a stable `extensions.code` and masks the unexpected.

- AppError → its own code and extras (`field` for bad input);
- a GraphQL value that fails its scalar, enum or input type → BAD_USER_INPUT with the path
  of the offending field in `extensions.field` (e.g. `expenses.0.amount`);
- the size limits (depth, introspection, aliases, tokens) → QUERY_TOO_COMPLEX, with a message
  that names the limit and its value; other parse and validation errors →
  GRAPHQL_PARSE_FAILED / GRAPHQL_VALIDATION_FAILED;
- anything else is logged and answered as INTERNAL, without its message.
"""

import logging
import re
from collections.abc import Callable, Iterator

from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    ListValueNode,
    Node,
    ObjectValueNode,
    ValueNode,
    VariableDefinitionNode,
    VariableNode,
    visit,
)
from graphql.language import Visitor
from strawberry.extensions import SchemaExtension

from api.limits import TOO_COMPLEX
from models.errors import AppError

log = logging.getLogger(__name__)

_VARIABLE_PATH = re.compile(r"^Variable '\$(\w+)' has invalid value at ([^:]+):")
_VARIABLE = re.compile(r"^Variable '\$(\w+)'")
_NAMED_FIELD = re.compile(r"(?:include required|include unknown) field '(\w+)'")
_BAD_VALUE = (
    "has invalid value",
    "Expected value of type",
    "of required type",
    "cannot represent",
    "does not exist in",
)
_ALIASES = re.compile(r"^(\d+) aliases found\. Allowed: (\d+)$")  # Strawberry's words
_TOKENS = re.compile(r"^Syntax Error: Document contains more than (\d+) tokens")  # graphql-core's


class ErrorCodes(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            document = self.execution_context.graphql_document
            result.errors = [coded(error, document) for error in result.errors]


def coded(error: GraphQLError, document: DocumentNode | None) -> GraphQLError:
    """The error with its stable `extensions.code` (and `field`), masked if unexpected."""
    original = error.original_error
    if isinstance(original, AppError):
        return _with(error, original.message, {"code": original.code, **original.extensions})
    if original is not None and error.path is not None:  # raised while resolving a field
        log.error("unexpected error at %s", error.path, exc_info=original)
        return _with(error, "Internal server error.", {"code": "INTERNAL"})
    if too_complex := _too_complex(error):
        return _with(error, too_complex, {"code": TOO_COMPLEX})
    if any(marker in error.message for marker in _BAD_VALUE):
        return _with(
            error, error.message, {"code": "BAD_USER_INPUT", "field": _field(error, document)}
        )
    if error.message.startswith("Syntax Error"):
        return _with(error, error.message, {"code": "GRAPHQL_PARSE_FAILED"})
    return _with(error, error.message, {"code": "GRAPHQL_VALIDATION_FAILED"})


def _too_complex(error: GraphQLError) -> str | None:
    """The message of an error that is a size limit, naming the limit; else None."""
    if (error.extensions or {}).get("code") == TOO_COMPLEX:  # our own rules name theirs
        return error.message
    if match := _ALIASES.match(error.message):
        return f"The operation has {match[1]} aliases: the alias limit is {match[2]}."
    if match := _TOKENS.match(error.message):
        return f"The document has more than {match[1]} tokens: the token limit is {match[1]}."
    return None


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
    """The dotted path of the value at fault, named by the argument it was given for."""
    if match := _VARIABLE_PATH.match(error.message) or _VARIABLE.match(error.message):
        variable = match.group(1)
        path = _argument_of(document, variable) if document else None
        path = path or variable
        if match.re is _VARIABLE_PATH:
            path += re.sub(r"\[(\d+)\]", r".\1", match.group(2))
    elif document is not None and error.nodes:
        path = _find(document, lambda node: node is error.nodes[0])  # type: ignore[index]
    else:
        return None
    named = _NAMED_FIELD.search(error.message)
    if path and named and not path.endswith("." + named.group(1)):
        path = f"{path}.{named.group(1)}"
    return path


def _argument_of(document: DocumentNode, variable: str) -> str | None:
    return _find(
        document, lambda node: isinstance(node, VariableNode) and node.name.value == variable
    )


def _find(document: DocumentNode, is_target: Callable[[Node], bool]) -> str | None:
    """The path, through arguments and input fields, of the first value that is the target."""
    found: list[str] = []

    class Finder(Visitor):
        def enter_argument(self, node: ArgumentNode, *_: object) -> None:
            path = _search(node.value, is_target, [node.name.value])
            if path is not None and not found:
                found.append(".".join(path))

        def enter_variable_definition(self, node: VariableDefinitionNode, *_: object) -> None:
            if is_target(node) or (node.default_value and is_target(node.default_value)):
                found.append(node.variable.name.value)

    visit(document, Finder())
    return found[0] if found else None


def _search(
    value: ValueNode, is_target: Callable[[Node], bool], path: list[str]
) -> list[str] | None:
    if is_target(value):
        return path
    if isinstance(value, ObjectValueNode):
        for field in value.fields:
            here = [*path, field.name.value]
            if is_target(field) or (hit := _search(field.value, is_target, here)) is not None:
                return here if is_target(field) else hit
    if isinstance(value, ListValueNode):
        for index, item in enumerate(value.values):
            if (hit := _search(item, is_target, [*path, str(index)])) is not None:
                return hit
    return None
