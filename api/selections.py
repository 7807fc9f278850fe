"""Plain selections compiled to functions, for payloads rendered without graphql-core.

A live event's payload is the same for every subscriber of one document, yet executing it
costs ~0.1 ms: a quarter of an API process's time in `python -m bench pipeline`. Most
subscriptions select plain fields (`{ batchId itemId toStatus error { code } }`); for those,
the selection becomes a function from the resolved value to its result, which does what
graphql-core would: each field's value read by its Strawberry field's name, leaves serialized
by their GraphQL type, nested objects likewise. Anything else (arguments, directives,
fragments, lists, resolvers, fields with extensions or permissions, a key selected twice) is
not plain: graphql-core executes it.
"""

from collections.abc import Callable

from graphql import (
    FieldNode,
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    SelectionSetNode,
)
from strawberry import Schema

Render = Callable[[object], object]  # a resolved value → its result, as JSON would hold it


class NotPlain(Exception):
    """A value graphql-core must complete itself: a null where the schema says non-null."""


def compile_plain(
    schema: Schema, type_: GraphQLOutputType, selections: SelectionSetNode | None
) -> Render | None:
    """A field's result as a function of its resolved value; None when it is not plain.
    `schema` (Strawberry's) tells each field's Python name, resolver and extensions."""
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    if isinstance(type_, GraphQLScalarType | GraphQLEnumType):
        return type_.serialize
    if isinstance(type_, GraphQLObjectType) and selections is not None:
        return _object(schema, type_, selections)
    return None  # lists, interfaces, unions


def _object(
    schema: Schema, parent: GraphQLObjectType, selections: SelectionSetNode
) -> Render | None:
    fields: list[tuple[str, str | None, bool, Render]] = []  # key, attribute, non-null, render
    for selection in selections.selections:
        if not isinstance(selection, FieldNode) or selection.arguments or selection.directives:
            return None
        key = selection.alias.value if selection.alias else selection.name.value
        if any(key == known for known, *_ in fields):
            return None
        if selection.name.value == "__typename":
            fields.append((key, None, True, _constant(parent.name)))
            continue
        field = parent.fields[selection.name.value]
        definition = schema.get_field_for_type(selection.name.value, parent.name)
        if (
            definition is None
            or definition.base_resolver is not None
            or definition.extensions  # a permission too: Strawberry runs it as an extension
            or definition.permission_classes
        ):
            return None
        inner = compile_plain(schema, field.type, selection.selection_set)
        if inner is None or definition.python_name is None:
            return None
        non_null = isinstance(field.type, GraphQLNonNull)
        fields.append((key, definition.python_name, non_null, inner))

    def render(value: object) -> object:
        result: dict[str, object] = {}
        for key, attribute, non_null, render_field in fields:
            item = value if attribute is None else getattr(value, attribute)
            if item is None:
                if non_null:
                    raise NotPlain(key)
                result[key] = None
            else:
                result[key] = render_field(item)
        return result

    return render


def _constant(value: str) -> Render:
    return lambda _: value
