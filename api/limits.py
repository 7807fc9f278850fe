"""Limits on an operation's size: depth, introspection and aliases (counted here), tokens
(graphql-core's parser stops at `MAX_TOKENS`; `more_tokens_than` tells that refusal apart).

Depth counts data fields through every fragment; root fields are level 0. Introspection
(`__schema`, `__type`) is measured on a budget of its own: the queries that standard tools
send (graphql-js `getIntrospectionQuery`, graphql-core's, gql's) nest `ofType` 7 to 9 levels
below `fields { args { type } }`, 14 in all. Depth alone would still let a 20-level
`fields { type { fields { … } } }` multiply the schema by itself at every level, so, as
graphql-java's "good faith introspection" does, a list of the schema (`types`, `fields`,
`args`, …) may appear only once on any path.
"""

from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSyntaxError,
    InlineFragmentNode,
    Lexer,
    OperationDefinitionNode,
    SelectionSetNode,
    Source,
    TokenKind,
    ValidationRule,
    Visitor,
    visit,
)

MAX_DEPTH = 10
MAX_INTROSPECTION_DEPTH = 20
MAX_ALIASES = 20
MAX_TOKENS = 5000

TOO_COMPLEX = "QUERY_TOO_COMPLEX"
_INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})
_SCHEMA_LISTS = frozenset(
    {"types", "directives", "fields", "args", "inputFields", "interfaces", "possibleTypes"}
)


@dataclass(frozen=True)
class _Shape:
    """What a selection set holds below it: its data depth, its introspection depth, the
    schema lists on some path through it, and whether a path repeats one."""

    depth: int = 0
    introspection_depth: int = 0
    lists: frozenset[str] = frozenset()
    repeats: str | None = None

    def __or__(self, other: "_Shape") -> "_Shape":
        return _Shape(
            max(self.depth, other.depth),
            max(self.introspection_depth, other.introspection_depth),
            self.lists | other.lists,
            self.repeats or other.repeats,
        )


class MaxDepthRule(ValidationRule):
    def enter_operation_definition(self, node: OperationDefinitionNode, *_: object) -> None:
        fragments = {
            d.name.value: d
            for d in self.context.document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        shape = _Measure(fragments).of(node.selection_set, introspection=False)
        name = node.name.value if node.name else "anonymous"
        if shape.depth > MAX_DEPTH:
            self._refuse(f"'{name}' exceeds the maximum operation depth of {MAX_DEPTH}", node)
        if shape.introspection_depth > MAX_INTROSPECTION_DEPTH:
            limit = MAX_INTROSPECTION_DEPTH
            self._refuse(f"'{name}' exceeds the maximum introspection depth of {limit}", node)
        if shape.repeats:
            message = (
                f"'{name}' nests the introspection list '{shape.repeats}' inside itself: "
                "each of the schema's lists may appear once on a path"
            )
            self._refuse(message, node)

    def _refuse(self, message: str, node: OperationDefinitionNode) -> None:
        self.report_error(GraphQLError(message, node, extensions={"code": TOO_COMPLEX}))


class MaxAliasesRule(ValidationRule):
    def enter_document(self, node: DocumentNode, *_: object) -> None:
        count = alias_count(node)
        if count > MAX_ALIASES:
            message = f"The operation has {count} aliases: the alias limit is {MAX_ALIASES}."
            self.report_error(GraphQLError(message, extensions={"code": TOO_COMPLEX}))


class _Measure:
    """Measures selection sets bottom up, each fragment once (cycles count as empty: another
    rule refuses them), so a document's cost to measure is its own size."""

    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.seen: dict[tuple[str, bool], _Shape] = {}

    def of(self, selections: SelectionSetNode, *, introspection: bool) -> _Shape:
        shape = _Shape()
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                shape |= self._field(selection, introspection)
            elif isinstance(selection, InlineFragmentNode):
                shape |= self.of(selection.selection_set, introspection=introspection)
            elif isinstance(selection, FragmentSpreadNode):
                shape |= self._spread(selection.name.value, introspection)
        return shape

    def _field(self, field: FieldNode, introspection: bool) -> _Shape:
        if field.selection_set is None:
            return _Shape()
        name = field.name.value
        inner = introspection or name in _INTROSPECTION_ROOTS
        below = self.of(field.selection_set, introspection=inner)
        if not inner:
            return _Shape(below.depth + 1, below.introspection_depth, repeats=below.repeats)
        listed = name in _SCHEMA_LISTS
        repeats = below.repeats or (name if listed and name in below.lists else None)
        lists = below.lists | {name} if listed else below.lists
        return _Shape(0, below.introspection_depth + 1, lists, repeats)

    def _spread(self, name: str, introspection: bool) -> _Shape:
        key = (name, introspection)
        if key not in self.seen:
            self.seen[key] = _Shape()  # a cycle counts as empty while it is measured
            fragment = self.fragments.get(name)
            if fragment is not None:
                self.seen[key] = self.of(fragment.selection_set, introspection=introspection)
        return self.seen[key]


def alias_count(document: DocumentNode) -> int:
    """Aliased fields in the document."""
    count = 0

    class Counter(Visitor):
        def enter_field(self, node: FieldNode, *_: object) -> None:
            nonlocal count
            count += node.alias is not None

    visit(document, Counter())
    return count


def more_tokens_than(query: str, limit: int) -> bool:
    """Whether the document runs past `limit` tokens before any syntax error: what
    graphql-core's parser refused when it was given `max_tokens=limit`."""
    lexer = Lexer(Source(query))
    try:
        for _ in range(limit + 1):
            if lexer.advance().kind is TokenKind.EOF:
                return False
    except GraphQLSyntaxError:
        return False
    return True
