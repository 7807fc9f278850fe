"""graphql-transport-ws with shared results: each event is executed once per distinct
subscription (document, operation, variables) and the same JSON goes to every subscriber.

Stock Strawberry executes the selection once per subscriber per event (~0.1 ms each), which
saturates a process near 150 subscribers at 50 events/s. Here a live subscription's document
is parsed and validated once, every subscriber still authorises its own arguments
(`open_stream`), and each `LiveEvent` caches its rendered result per document. Anything that
is not a plain live subscription (queries, mutations, invalid documents) takes Strawberry's
own path, errors and all. The server also pings every `keep_alive_interval` to keep idle
connections alive through proxies.
"""

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from inspect import isawaitable

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
    parse,
    specified_rules,
    validate,
)
from graphql.execution.values import get_argument_values
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import ConnectionInitMessage
from strawberry.types.execution import PreExecutionError
from strawberry.utils.aio import aclosing

from api.context import Context
from api.errors import coded
from api.hub import LiveEvent
from api.limits import MAX_ALIASES, MAX_TOKENS, MaxDepthRule, alias_count
from api.subscriptions import SyncEvent, open_stream

log = logging.getLogger(__name__)

LIVE_FIELDS = frozenset({"syncBatchEvents", "companySyncEvents"})
_PLANS_KEPT = 512


@dataclass(frozen=True)
class LivePlan:
    document: DocumentNode
    field: FieldNode


class _Plans:
    """Parsed, validated live subscription documents, by (query, operation name)."""

    def __init__(self) -> None:
        self._plans: OrderedDict[tuple[str, str | None], LivePlan | None] = OrderedDict()

    def get(self, schema: GraphQLSchema, query: str, operation_name: str | None) -> LivePlan | None:
        key = (query, operation_name)
        if key in self._plans:
            self._plans.move_to_end(key)
            return self._plans[key]
        plan = self._plans[key] = _plan(schema, query, operation_name)
        if len(self._plans) > _PLANS_KEPT:
            self._plans.popitem(last=False)
        return plan


def _plan(schema: GraphQLSchema, query: str, operation_name: str | None) -> LivePlan | None:
    """A live subscription with one plain root field, within every limit; else None."""
    try:
        document = parse(query, max_tokens=MAX_TOKENS)
    except GraphQLError:
        return None
    if alias_count(document) > MAX_ALIASES or validate(
        schema, document, [*specified_rules, MaxDepthRule]
    ):
        return None
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
        return None
    (root,) = operation.selection_set.selections  # validation allows one root field
    if not isinstance(root, FieldNode) or root.name.value not in LIVE_FIELDS or root.directives:
        return None
    return LivePlan(document, root)


PLANS = _Plans()


class LiveTransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    _pinger: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self._pinger is None:
            self._pinger = asyncio.create_task(self._ping())

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(self.view.keep_alive_interval or 15.0)
            await self.send_message({"type": "ping"})

    async def shutdown(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._pinger
        await super().shutdown()

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        schema: GraphQLSchema = self.schema._schema  # type: ignore[attr-defined]
        plan = PLANS.get(schema, operation.query, operation.operation_name)
        executor = (
            Executor.build(
                schema,
                plan.document,
                context_value=self.context,
                raw_variable_values=operation.variables,
                operation_name=operation.operation_name,
            )
            if plan is not None
            else None
        )
        if plan is None or not isinstance(executor, Executor):
            await super().run_operation(operation)  # Strawberry's path reports what is wrong
            return
        try:
            await self._stream(operation, plan, executor)
        except Exception as error:
            failure = GraphQLError(str(error), path=[plan.field.name.value], original_error=error)
            payload = [coded(failure, plan.document).formatted]
            with contextlib.suppress(Exception):
                await operation.send_operation_message(
                    {"id": operation.id, "type": "error", "payload": payload}
                )

    async def _handle_pre_execution_error(
        self, operation: Operation[Context, None], result: PreExecutionError
    ) -> None:
        """Strawberry's own path reports invalid operations; give its errors their codes too."""
        result.errors = [coded(error, None) for error in result.errors or []]
        await super()._handle_pre_execution_error(operation, result)

    async def _stream(
        self, operation: Operation[Context, None], plan: LivePlan, executor: Executor[Context]
    ) -> None:
        assert executor.schema.subscription_type is not None
        definition = executor.schema.subscription_type.fields[plan.field.name.value]
        arguments = get_argument_values(definition, plan.field, executor.variable_values)
        stream = await open_stream(self.context, plan.field.name.value, arguments)
        key = json.dumps([operation.query, operation.operation_name, operation.variables])
        prefix = '{"id":' + json.dumps(operation.id) + ',"type":"next","payload":'
        async with aclosing(stream):
            async for event in stream:
                payload = event.rendered.get(key) or await _render(event, key, executor)
                await self.websocket.ws.send_text(prefix + payload + "}")  # type: ignore[attr-defined]
        await operation.send_operation_message({"id": operation.id, "type": "complete"})


async def _render(event: LiveEvent, key: str, executor: Executor[Context]) -> str:
    result = execute_subscription_event(
        executor.build_per_event_executor(SyncEvent.from_row(event.row))
    )
    if isawaitable(result):
        result = await result
    assert isinstance(result, ExecutionResult)
    payload = event.rendered[key] = json.dumps(result.formatted, separators=(",", ":"))
    return payload
