"""graphql-transport-ws with shared results: each event is executed once per distinct
subscription (document, operation, variables) and the same JSON goes to every subscriber.

Stock Strawberry executes the selection once per subscriber per event (~0.1 ms each), which
saturates a process near 150 subscribers at 50 events/s. Here a live subscription's document
is parsed and validated once, every subscriber still authorises its own arguments
(`authorise`), and each `LiveEvent` caches its rendered result per document. A subscription
follows its company's feed, or the log when it falls behind, and sends the shared text on
its Starlette WebSocket (the one the view passed to `get_context`). Anything that is not a
plain live subscription (queries, mutations, invalid documents) takes Strawberry's own path,
errors and all. The server also pings every `keep_alive_interval` (`Pings`) to keep idle
connections alive through proxies.
"""

import asyncio
import contextlib
import itertools
import json
import logging
from collections import OrderedDict
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    Executor,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    execute_subscription_event,
    get_operation_ast,
)
from graphql.execution.values import get_argument_values
from strawberry import Schema
from strawberry.schema.base import BaseSchema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage

from api.admission import parsed, validated
from api.context import Context
from api.core_schema import graphql_schema
from api.errors import Asked, coded
from api.hub import LiveEvent
from api.selections import NotPlain, Render, compile_plain
from api.subscriptions import SyncEvent, authorise, follow
from api.tracing import subscription_span
from api.trusted import TrustedDocuments
from models.errors import AppError

log = logging.getLogger(__name__)

LIVE_FIELDS = frozenset({"syncBatchEvents", "companySyncEvents"})
_PLANS_KEPT = 512
_SERIALS = itertools.count()


@dataclass(frozen=True)
class LivePlan:
    document: DocumentNode
    field: FieldNode
    render: Render | None  # the event's result without graphql-core, when its selection is plain
    serial: int  # names the plan in events' rendered caches
    name: str | None  # the operation's, as written in the document


class _Plans:
    """Parsed, validated live subscription documents, by (query, operation name)."""

    def __init__(self) -> None:
        self._plans: OrderedDict[tuple[str, str | None], LivePlan | None] = OrderedDict()

    def get(self, schema: BaseSchema, query: str, operation_name: str | None) -> LivePlan | None:
        key = (query, operation_name)
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        plan = self._plans[key] = live_plan(schema, query, operation_name)
        if len(self._plans) > _PLANS_KEPT:
            self._plans.popitem(last=False)
        return plan


def live_plan(
    strawberry_schema: BaseSchema, query: str, operation_name: str | None
) -> LivePlan | None:
    """A live subscription with one plain root field, within every limit; else None."""
    schema = graphql_schema(strawberry_schema)
    try:
        document = parsed(query)
    except GraphQLError:
        return None
    if validated(schema, document):
        return None
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
        return None
    (root,) = operation.selection_set.selections  # validation allows one root field
    if not isinstance(root, FieldNode) or root.name.value not in LIVE_FIELDS or root.directives:
        return None
    assert schema.subscription_type is not None and isinstance(strawberry_schema, Schema)
    source = strawberry_schema.get_field_for_type(root.name.value, schema.subscription_type.name)
    if source is None or source.permission_classes or source.extensions:
        return None  # Strawberry's path runs what guards the field
    field = schema.subscription_type.fields[root.name.value]
    render = compile_plain(strawberry_schema, field.type, root.selection_set)
    name = operation.name.value if operation.name else None
    return LivePlan(document, root, render, next(_SERIALS), name)


PLANS = _Plans()


def _executor(
    schema: GraphQLSchema, plan: LivePlan, context: Context, operation: Operation[Context, None]
) -> Executor[Context] | list[GraphQLError]:
    """The operation's executor, or what is wrong with its variables."""
    return Executor.build(
        schema,
        plan.document,
        context_value=context,
        raw_variable_values=operation.variables,
        operation_name=operation.operation_name,
    )


def _arguments(
    schema: GraphQLSchema, plan: LivePlan, context: Context, operation: Operation[Context, None]
) -> dict[str, Any] | None:
    """The live field's arguments; None when the variables are wrong. The executor is not
    kept: about 1.5 KiB for each idle subscriber, while most results never need it."""
    executor = _executor(schema, plan, context, operation)
    if not isinstance(executor, Executor):
        return None
    assert schema.subscription_type is not None
    definition = schema.subscription_type.fields[plan.field.name.value]
    return get_argument_values(definition, plan.field, executor.variable_values)


class Pings:
    """One task pings every acknowledged connection of an app every `interval` s: a task
    per connection would hold about 1.5 KiB of each idle subscriber's memory."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.handlers: set[LiveTransportWSHandler] = set()
        self._task: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()  # pings under way

    def add(self, handler: "LiveTransportWSHandler") -> None:
        self.handlers.add(handler)
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def discard(self, handler: "LiveTransportWSHandler") -> None:
        self.handlers.discard(handler)
        if not self.handlers and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for handler in list(self.handlers):
                send = asyncio.create_task(_send_ping(handler))  # a full socket waits alone
                self._sends.add(send)
                send.add_done_callback(self._sends.discard)


async def _send_ping(handler: "LiveTransportWSHandler") -> None:
    with contextlib.suppress(Exception):  # a closing socket: its handler is shutting down
        await handler.send_message({"type": "ping"})


class LiveTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged:
            self._pings.add(self)

    async def shutdown(self) -> None:
        self._pings.discard(self)
        await super().shutdown()

    @property
    def _trusted(self) -> TrustedDocuments:
        trusted: TrustedDocuments = self.view.trusted  # type: ignore[attr-defined]  # GraphQLApp's
        return trusted

    @property
    def _pings(self) -> Pings:
        pings: Pings = self.view.pings  # type: ignore[attr-defined]  # GraphQLApp's
        return pings

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        schema = graphql_schema(self.schema)
        plan = PLANS.get(self.schema, operation.query, operation.operation_name)
        if plan is not None and not self._trusted.admits(plan.document):
            plan = None  # Strawberry's path refuses it, with the rule's error
        arguments = None if plan is None else _arguments(schema, plan, self.context, operation)
        if plan is None or arguments is None:
            await super().run_operation(operation)  # Strawberry's path reports what is wrong
            return
        message = _Message(schema, self.context, operation, plan)
        socket = self.context.socket  # Starlette's, as the view handed it to `get_context`
        assert socket is not None
        try:  # in this frame, not a nested one: each idle subscriber holds it
            with subscription_span(plan.name):
                interest = await authorise(self.context, plan.field.name.value, arguments)
            async with aclosing(follow(self.context, interest)) as events:
                async for event in events:
                    await socket.send_text(message.text(event))
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except Exception as error:
            if not isinstance(error, AppError):  # ours are what the client asked wrongly
                log.exception("subscription %s ended by an unexpected error", operation.id)
            failure = GraphQLError(str(error), path=[plan.field.name.value], original_error=error)
            asked = Asked(schema, operation.query, plan.document, operation.variables)
            payload = [coded(failure, asked).formatted]
            with contextlib.suppress(Exception):
                await operation.send_operation_message(
                    {"id": operation.id, "type": "error", "payload": payload}
                )


class _Message:
    """How one operation's events become `next` messages.

    The result JSON is computed once per event and distinct (document, operation, variables),
    and kept on the event for every other subscriber of the same; only the id differs.
    """

    __slots__ = (
        "context",
        "executor",
        "field",
        "id",
        "key",
        "operation",
        "plan",
        "prefix",
        "schema",
    )

    def __init__(
        self,
        schema: GraphQLSchema,
        context: Context,
        operation: Operation[Context, None],
        plan: LivePlan,
    ) -> None:
        self.schema = schema
        self.context = context
        self.operation = operation
        self.plan = plan
        self.executor: Executor[Context] | None = None  # built for the first result not plain
        self.field = (plan.field.alias or plan.field.name).value
        self.id = operation.id
        # the plan stands for the document and operation: no copy of the text per subscriber
        self.key = f"{plan.serial}:{json.dumps(operation.variables)}"
        self.prefix = '{"id":' + json.dumps(operation.id) + ',"type":"next","payload":'

    def payload(self, event: LiveEvent) -> str:
        payload = event.rendered.get(self.key)
        if payload is None:
            result = self._result(SyncEvent.from_row(event.row))
            payload = json.dumps(result, separators=(",", ":"))
            event.rendered[self.key] = payload
        return payload

    def _result(self, event: SyncEvent) -> object:
        if self.plan.render is not None:
            with contextlib.suppress(NotPlain):
                return {"data": {self.field: self.plan.render(event)}}
        if self.executor is None:
            built = _executor(self.schema, self.plan, self.context, self.operation)
            assert isinstance(built, Executor), "its variables were checked before it began"
            self.executor = built
        # SyncEvent's fields are plain values: execution never awaits
        result = execute_subscription_event(self.executor.build_per_event_executor(event))
        assert isinstance(result, ExecutionResult), "live fields must resolve synchronously"
        return result.formatted

    def text(self, event: LiveEvent) -> str:
        return self.prefix + self.payload(event) + "}"
