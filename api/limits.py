"""Limits on an operation's size: depth (counted here), aliases and tokens (Strawberry's).

Depth is counted through every field and fragment, introspection included.

Strawberry's QueryDepthLimiter skips introspection fields (`__schema { types { … } }` nests
without bound), so this rule counts every field level instead; root fields are level 0.
"""

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    Visitor,
    visit,
)
from strawberry.extensions.max_aliases import create_validator as create_aliases_rule

MAX_DEPTH = 10
MAX_ALIASES = 20
MAX_TOKENS = 5000


class MaxDepthRule(ValidationRule):
    def enter_operation_definition(self, node: OperationDefinitionNode, *_: object) -> None:
        fragments = {
            d.name.value: d
            for d in self.context.document.definitions
            if isinstance(d, FragmentDefinitionNode)
        }
        depth = _Depth(fragments).of(node.selection_set, 0)
        if depth > MAX_DEPTH:
            name = node.name.value if node.name else "anonymous"
            self.report_error(
                GraphQLError(f"'{name}' exceeds maximum operation depth of {MAX_DEPTH}", node)
            )


class _Depth:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.seen: dict[tuple[str, int], int] = {}  # each fragment measured once per level

    def of(self, selections: SelectionSetNode, level: int) -> int:
        deepest = level
        for selection in selections.selections:
            if deepest > MAX_DEPTH:
                break  # already too deep: the exact figure does not matter
            if isinstance(selection, FieldNode):
                if selection.selection_set is not None:
                    deepest = max(deepest, self.of(selection.selection_set, level + 1))
            elif isinstance(selection, InlineFragmentNode):
                deepest = max(deepest, self.of(selection.selection_set, level))
            elif isinstance(selection, FragmentSpreadNode):
                deepest = max(deepest, self._spread(selection.name.value, level))
        return deepest

    def _spread(self, name: str, level: int) -> int:
        key = (name, level)
        if key not in self.seen:
            self.seen[key] = level  # a cycle counts no deeper (another rule refuses cycles)
            fragment = self.fragments.get(name)
            if fragment is not None:
                self.seen[key] = self.of(fragment.selection_set, level)
        return self.seen[key]


def alias_count(document: DocumentNode) -> int:
    """Aliased fields in the document, as Strawberry's MaxAliasesLimiter counts them."""
    count = 0

    class Counter(Visitor):
        def enter_field(self, node: FieldNode, *_: object) -> None:
            nonlocal count
            count += node.alias is not None

    visit(document, Counter())
    return count


# Strawberry's MaxAliasesLimiter makes a new rule class per instance, and so per request:
# `ValidationCache`, keyed by the rules, never hit. One class, made once, lets it.
MaxAliasesRule = create_aliases_rule(MAX_ALIASES)
