"""The validation rules every operation passes, whatever its transport: graphql-core's, with
`InputValuesRule` for its ValuesOfCorrectTypeRule, and our limits."""

from collections.abc import Iterator

from graphql import ValuesOfCorrectTypeRule, specified_rules
from strawberry.extensions import SchemaExtension

from api.errors import InputValuesRule
from api.limits import MaxAliasesRule, MaxDepthRule

VALIDATION_RULES = (
    *(InputValuesRule if rule is ValuesOfCorrectTypeRule else rule for rule in specified_rules),
    MaxDepthRule,
    MaxAliasesRule,
)


class ValidationRules(SchemaExtension):
    """Sets the operation's rules, as Strawberry's AddValidationRules adds to them: one tuple,
    the same object every time, so that `ValidationCache` finds what it validated before."""

    def on_operation(self) -> Iterator[None]:
        self.execution_context.validation_rules = VALIDATION_RULES
        yield
