"""Live payloads rendered from plain selections equal graphql-core's execution of them."""

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import strawberry
from graphql import (
    ExecutionResult,
    Executor,
    FieldNode,
    GraphQLObjectType,
    execute_subscription_event,
    get_operation_ast,
    parse,
)
from strawberry.extensions import FieldExtension
from strawberry.permission import BasePermission
from strawberry.types import Info

from api.core_schema import graphql_schema
from api.live_ws import live_plan
from api.schema import schema
from api.selections import NotPlain, compile_plain
from api.subscriptions import SyncEvent
from models.tables import SyncEvent as SyncEventRow
from models.tables import as_loaded

CORE = graphql_schema(schema)


def _event(**values: object) -> SyncEvent:
    row = {"company_id": "cmp_1", "batch_id": "bat_1", "item_id": None, "from_status": None}
    row |= {"error_code": None, "error_message": None}
    return SyncEvent.from_row(as_loaded(SyncEventRow, row | values))


EVENTS = [
    _event(id=41, to_status="PENDING", occurred_at=datetime(2026, 11, 26, 18, 0, 1, 250, UTC)),
    _event(
        id=42,
        item_id="itm_1",
        from_status="PROCESSING",
        to_status="FAILED",
        occurred_at=datetime(2026, 11, 26, 18, 0, 2, tzinfo=UTC),
        error_code="INVALID_ACCOUNT_ID",
        error_message="Account code '999' is not a valid code",
    ),
]
PLAIN = [
    "{ batchId itemId toStatus }",
    "{ eventId companyId batchId itemId fromStatus toStatus occurredAt }",
    "{ __typename id: eventId status: toStatus error { __typename code message hint retryable } }",
    "{ error { code } at: occurredAt }",
]
NOT_PLAIN = [
    "{ ... on SyncEvent { batchId } }",
    "{ ...F } } fragment F on SyncEvent { batchId ",
    "{ toStatus @include(if: true) }",
    "{ error { code } error { message } }",
]


def _document(selection: str) -> str:
    return f'subscription {{ companySyncEvents(companyId: "cmp_1") {selection} }}'


def _root(query: str) -> FieldNode:
    operation = get_operation_ast(parse(query))
    assert operation is not None
    (root,) = operation.selection_set.selections
    assert isinstance(root, FieldNode)
    return root


def _executed(query: str, event: SyncEvent) -> object:
    executor = Executor.build(CORE, parse(query))
    assert isinstance(executor, Executor)
    result = execute_subscription_event(executor.build_per_event_executor(event))
    assert isinstance(result, ExecutionResult)
    return result.formatted


@pytest.mark.parametrize("selection", PLAIN)
def test_plain_selections_render_as_graphql_core_executes_them(selection: str) -> None:
    query = _document(selection)
    field = CORE.subscription_type.fields["companySyncEvents"]  # type: ignore[union-attr]
    render = compile_plain(schema, field.type, _root(query).selection_set)
    assert render is not None
    for event in EVENTS:
        assert {"data": {"companySyncEvents": render(event)}} == _executed(query, event)


@pytest.mark.parametrize("selection", NOT_PLAIN)
def test_other_selections_are_left_to_graphql_core(selection: str) -> None:
    field = CORE.subscription_type.fields["companySyncEvents"]  # type: ignore[union-attr]
    assert compile_plain(schema, field.type, _root(_document(selection)).selection_set) is None


def test_a_null_where_the_schema_says_non_null_is_left_to_graphql_core() -> None:
    field = CORE.subscription_type.fields["companySyncEvents"]  # type: ignore[union-attr]
    render = compile_plain(schema, field.type, _root(_document("{ batchId }")).selection_set)
    assert render is not None
    broken = SyncEvent(**{**vars(EVENTS[0]), "batch_id": None})
    with pytest.raises(NotPlain):
        render(broken)


class _Nobody(BasePermission):
    message = "Nobody may read this."

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:  # Any: Strawberry's
        return False


class _Loud(FieldExtension):
    def resolve(self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any) -> Any:
        return str(next_(source, info, **kwargs)).upper()  # Any: Strawberry's resolver protocol


@strawberry.type(name="Guarded")
class _Guarded:
    open: str
    closed: str = strawberry.field(permission_classes=[_Nobody])
    loud: str = strawberry.field(extensions=[_Loud()])


@strawberry.type
class _Query:
    guarded: _Guarded


@pytest.mark.parametrize(
    ("selection", "plain"),
    [("{ open }", True), ("{ open closed }", False), ("{ loud }", False)],
)
def test_a_field_with_a_permission_or_an_extension_is_never_plain(
    selection: str, plain: bool
) -> None:
    """The fast path would skip what graphql-core runs for such a field: a permission added
    later, or an extension's work."""
    guarded_schema = strawberry.Schema(query=_Query)
    guarded = graphql_schema(guarded_schema).type_map["Guarded"]
    assert isinstance(guarded, GraphQLObjectType)
    root = _root(f"{{ guarded {selection} }}")
    assert (compile_plain(guarded_schema, guarded, root.selection_set) is not None) is plain


@strawberry.type
class _GuardedSubscription:
    @strawberry.subscription(permission_classes=[_Nobody])  # type: ignore[untyped-decorator]
    async def company_sync_events(self, company_id: strawberry.ID) -> AsyncIterator[SyncEvent]:
        yield EVENTS[0]  # never reached: the permission refuses first

    @strawberry.subscription
    async def sync_batch_events(self, batch_id: strawberry.ID) -> AsyncIterator[SyncEvent]:
        yield EVENTS[0]


def test_a_live_field_with_a_permission_takes_strawberrys_path() -> None:
    """The shared live path runs no permission class: a guarded root field is left to
    Strawberry, which does."""
    guarded = strawberry.Schema(query=_Query, subscription=_GuardedSubscription)
    company = 'subscription { companySyncEvents(companyId: "c") { batchId } }'
    batch = 'subscription { syncBatchEvents(batchId: "b") { batchId } }'
    assert live_plan(guarded, company, None) is None
    assert live_plan(guarded, batch, None) is not None
    assert live_plan(schema, company, None) is not None
