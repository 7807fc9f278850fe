"""Every error leaves with a stable `extensions.code`, chosen by where it came from, never by
its wording; the unexpected are masked.

- AppError → its own code and extras (`field` for bad input);
- a value that fails its scalar, enum or input type → BAD_USER_INPUT with the path of the
  offending field in `extensions.field` (e.g. `expenses.0.amount`): written in the document
  (`InputValuesRule`, in place of graphql-core's ValuesOfCorrectTypeRule) or sent as a
  variable (`variable_field`);
- the size limits (depth, introspection, aliases, tokens) → QUERY_TOO_COMPLEX, with a message
  that names the limit and its value; other syntax errors → GRAPHQL_PARSE_FAILED; every other
  validation error → GRAPHQL_VALIDATION_FAILED;
- anything else is logged and answered as INTERNAL, without its message.
"""

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    GraphQLInputType,
    GraphQLSchema,
    GraphQLSyntaxError,
    ListValueNode,
    Node,
    ObjectFieldNode,
    ObjectValueNode,
    ValidationRule,
    ValueNode,
    VariableDefinitionNode,
    VariableNode,
    get_named_type,
    is_input_object_type,
    is_list_type,
    is_non_null_type,
    is_required_input_field,
    type_from_ast,
    validate_input_literal,
    validate_input_value,
    visit,
)
from graphql.language import Visitor
from graphql.language.visitor import SKIP, VisitorAction
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

from api.core_schema import graphql_schema
from api.limits import MAX_TOKENS, TOO_COMPLEX, more_tokens_than
from models.errors import AppError

log = logging.getLogger(__name__)

BAD_USER_INPUT = "BAD_USER_INPUT"
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"


@dataclass(frozen=True)
class Asked:
    """What the client sent, as far as it was understood: for naming the value at fault."""

    schema: GraphQLSchema
    query: str | None
    document: DocumentNode | None
    variables: Mapping[str, object] | None


class ErrorCodes(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        """Validation errors are coded where Strawberry keeps them: the same list leaves."""
        yield
        errors = self.execution_context.pre_execution_errors
        if errors:
            errors[:] = [_validation_coded(error) for error in errors]

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if result is not None and result.errors:
            result.errors = self._coded(result.errors)

    def on_stream_result(self, result: object) -> Iterator[None]:
        """The WebSocket transports' results, pre-execution errors included."""
        if isinstance(result, ExecutionResult) and result.errors:
            result.errors = self._coded(result.errors)
        yield

    def _coded(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        context = self.execution_context
        asked = Asked(
            graphql_schema(context.schema),
            context.query,
            context.graphql_document,
            context.variables,
        )
        return coded_all(errors, asked)


def coded_all(errors: list[GraphQLError], asked: Asked) -> list[GraphQLError]:
    """Each error with its code; variable errors in the order graphql-core reported them."""
    reported: Counter[str] = Counter()  # errors so far, per variable
    result = []
    for error in errors:
        variable = _variable_of(error)
        ordinal = reported[variable] if variable else 0
        if variable:
            reported[variable] += 1
        result.append(coded(error, asked, ordinal))
    return result


def coded(error: GraphQLError, asked: Asked, ordinal: int = 0) -> GraphQLError:
    """The error with its stable `extensions.code` (and `field`), masked if unexpected.
    `ordinal` counts the errors graphql-core reported before it for the same variable."""
    original = error.original_error
    if isinstance(original, AppError):
        return _with(error, original.message, {"code": original.code, **original.extensions})
    if (error.extensions or {}).get("code"):  # coded where it was raised
        return error
    if original is not None and error.path is not None:  # raised while resolving a field
        log.error("unexpected error at %s", error.path, exc_info=original)
        return _with(error, "Internal server error.", {"code": "INTERNAL"})
    if isinstance(error, GraphQLSyntaxError):
        if asked.query is not None and more_tokens_than(asked.query, MAX_TOKENS):
            message = (
                f"The document has more than {MAX_TOKENS} tokens: the token limit is {MAX_TOKENS}."
            )
            return _with(error, message, {"code": TOO_COMPLEX})
        return _with(error, error.message, {"code": PARSE_FAILED})
    if (variable := _variable_of(error)) and asked.document is not None:
        field = variable_field(asked, variable, ordinal)
        return _with(error, error.message, {"code": BAD_USER_INPUT, "field": field})
    return _validation_coded(error)


def _validation_coded(error: GraphQLError) -> GraphQLError:
    if (error.extensions or {}).get("code"):
        return error
    return _with(error, error.message, {"code": VALIDATION_FAILED})


def _variable_of(error: GraphQLError) -> str | None:
    """The variable whose value graphql-core refused while coercing it (such errors point at
    its definition and lie on no result path); None for any other error."""
    node = error.nodes[0] if error.nodes else None
    if error.path is None and isinstance(node, VariableDefinitionNode):
        return node.variable.name.value
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


class InputValuesRule(ValidationRule):
    """graphql-core's ValuesOfCorrectTypeRule (each outermost literal checked whole with
    `validate_input_literal`), whose errors are BAD_USER_INPUT and name their field."""

    def enter(self, node: Node, *_: object) -> VisitorAction:
        if not isinstance(node, ValueNode) or isinstance(node, VariableNode):
            return None
        if isinstance(node, ListValueNode):  # TypeInfo is already at the list's item type
            input_type = self.context.get_parent_input_type()
        else:
            input_type = self.context.get_input_type()
        if input_type is not None:
            reported: Counter[int] = Counter()  # errors so far, per object literal

            def on_error(error: GraphQLError, path: list[str | int]) -> None:
                assert input_type is not None
                at = _find(self.context.document, lambda candidate: candidate is node)
                field = _dotted(at, path)
                literal = error.nodes[0] if error.nodes else None
                if isinstance(literal, ObjectValueNode):  # a required field left out
                    present = [f.name.value for f in literal.fields]
                    named = _named_field(_type_at(input_type, path), present, reported[id(literal)])
                    reported[id(literal)] += 1
                    field = _dotted(field, [named] if named else [])
                elif isinstance(literal, ObjectFieldNode):  # a field the type does not have
                    field = _dotted(field, [literal.name.value])
                error.extensions = {"code": BAD_USER_INPUT, "field": field}
                self.report_error(error)

            validate_input_literal(
                node, input_type, on_error, None, None, self.context.hide_suggestions
            )
        return SKIP


def variable_field(asked: Asked, variable: str, ordinal: int) -> str | None:
    """The dotted path, from the argument the variable is passed to, of the value behind
    graphql-core's `ordinal`-th error about the variable: the same check, run again here,
    reports its paths in the same order."""
    assert asked.document is not None
    at = _argument_of(asked.document, variable) or variable
    definition = _definition_of(asked.document, variable)
    type_ = type_from_ast(asked.schema, definition.type) if definition else None
    variables = asked.variables or {}
    if type_ is None or variable not in variables:  # a required variable not sent at all
        return at
    problems: list[list[str | int]] = []
    value = variables[variable]
    validate_input_value(value, type_, lambda _, path: problems.append(path))  # type: ignore[arg-type]
    if ordinal >= len(problems):
        return at
    path = problems[ordinal]
    at_object = _value_at(value, path)
    if isinstance(at_object, dict):  # a field left out, or one the type does not have
        earlier = sum(1 for other in problems[:ordinal] if other == path)
        named = _named_field(_type_at(type_, path), list(at_object), earlier)  # type: ignore[arg-type]
        return _dotted(at, [*path, named] if named else path)
    return _dotted(at, path)


def _named_field(type_: GraphQLInputType | None, present: list[str], ordinal: int) -> str | None:
    """The field named by the `ordinal`-th error about one input object: graphql-core reports
    the required fields left out in the type's order, then the unknown ones in the input's."""
    named = get_named_type(type_) if type_ is not None else None
    if not is_input_object_type(named):
        return None
    fields = named.fields
    missing = [n for n, f in fields.items() if n not in present and is_required_input_field(f)]
    unknown = [name for name in present if name not in fields]
    names = missing + unknown
    return names[ordinal] if ordinal < len(names) else None


def _type_at(type_: GraphQLInputType, path: list[str | int]) -> GraphQLInputType | None:
    """The input type found at `path` inside a value of `type_`."""
    current: GraphQLInputType | None = type_
    for step in path:
        while current is not None and is_non_null_type(current):
            current = current.of_type
        if isinstance(step, int) and is_list_type(current):
            current = current.of_type
        elif isinstance(step, str) and is_input_object_type(current):
            field = current.fields.get(step)
            current = field.type if field else None
        else:
            return None
    return current


def _value_at(value: object, path: list[str | int]) -> object:
    for step in path:
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict):
            value = value.get(step)
        else:
            return None
    return value


def _dotted(at: str | None, path: list[str | int]) -> str | None:
    parts = [part for part in (at, *map(str, path)) if part]
    return ".".join(parts) or None


def _definition_of(document: DocumentNode, variable: str) -> VariableDefinitionNode | None:
    found: list[VariableDefinitionNode] = []

    class Finder(Visitor):
        def enter_variable_definition(self, node: VariableDefinitionNode, *_: object) -> None:
            if node.variable.name.value == variable:
                found.append(node)

    visit(document, Finder())
    return found[0] if found else None


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
