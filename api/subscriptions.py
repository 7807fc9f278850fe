"""Live status events: replay from the log after `afterEventId`, then follow the hub.

`follow` is the one stream both subscription fields, and the shared graphql-transport-ws
path in `api/live_ws.py`, read. It never misses or repeats an event: the replay reads the
log up to the number the feed stood at when the subscription joined it, and the live part
continues from exactly that number.

`syncBatchEvents` completes after the batch's terminal event (COMPLETED or FAILED), as a
poller would stop; subscribing to a batch that is already terminal replays what follows
`afterEventId` and completes. A retry reopens the batch for new subscriptions.
"""

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from datetime import datetime

import strawberry

from api.context import Context, Info
from api.hub import LiveEvent
from api.types import SyncError
from models.batch import get_batch
from models.enums import TERMINAL_BATCH_STATUSES, SyncStatus
from models.errors import InvalidInput, NotFound
from models.events import company_events, last_batch_event
from models.tables import SyncEvent as SyncEventRow

REPLAY_PAGE = 500


@strawberry.type(description="One status transition of a batch (itemId null) or of an item.")
class SyncEvent:
    event_id: strawberry.ID = strawberry.field(
        description="A decimal integer, increasing with every event: compare it as a number."
    )
    company_id: strawberry.ID
    batch_id: strawberry.ID
    item_id: strawberry.ID | None
    from_status: SyncStatus | None = strawberry.field(description="Null when the row was created.")
    to_status: SyncStatus
    occurred_at: datetime
    error: SyncError | None = strawberry.field(description="Why it FAILED, when it did.")

    @classmethod
    def from_row(cls, row: SyncEventRow) -> "SyncEvent":
        return cls(
            event_id=strawberry.ID(str(row.id)),
            company_id=strawberry.ID(row.company_id),
            batch_id=strawberry.ID(row.batch_id),
            item_id=strawberry.ID(row.item_id) if row.item_id else None,
            from_status=SyncStatus(row.from_status) if row.from_status else None,
            to_status=SyncStatus(row.to_status),
            occurred_at=row.occurred_at,
            error=SyncError.from_parts(row.error_code, row.error_message),
        )


def parse_after(after_event_id: str | None) -> int:
    if after_event_id is None:
        return 0
    if not after_event_id.isdecimal():
        raise InvalidInput("afterEventId: an eventId (a decimal integer)", field="afterEventId")
    return int(after_event_id)


async def open_stream(
    ctx: Context, field: str, arguments: Mapping[str, str | None]
) -> AsyncGenerator[LiveEvent, None]:
    """Authorise a subscription field's arguments, then stream its events."""
    after = parse_after(arguments.get("afterEventId"))
    if field == "syncBatchEvents":
        batch_id = arguments["batchId"] or ""
        batch = await get_batch(ctx.services.db, company_id=ctx.company.id, batch_id=batch_id)
        if batch is None:
            raise NotFound(f"batch {batch_id} not found")
        return follow(ctx, company_id=batch.company_id, batch_id=batch.id, after=after)
    company_id = ctx.own(arguments["companyId"] or "")
    return follow(ctx, company_id=company_id, batch_id=None, after=after)


async def follow(
    ctx: Context, *, company_id: str, batch_id: str | None, after: int
) -> AsyncGenerator[LiveEvent, None]:
    db = ctx.services.db
    async with ctx.hub.feed(company_id) as feed:
        covered = feed.seq  # every event up to here is in the log; later ones reach the feed
        done = False
        if batch_id is not None:  # already over, as far as the log up to `covered` knows?
            last = await last_batch_event(db, batch_id=batch_id)
            done = last is not None and _ends_batch(last) and last.company_seq <= covered
        replayed = 0
        while True:  # the replay: the log up to `covered`, a page at a time
            page = await company_events(
                db,
                company_id=company_id,
                after_seq=replayed,
                upto_seq=covered,
                limit=REPLAY_PAGE,
                batch_id=batch_id,
            )
            for row in page:
                if (row.id or 0) > after:
                    yield LiveEvent(row)
            if len(page) < REPLAY_PAGE:
                break
            replayed = page[-1].company_seq
        if done:
            return
        while True:  # live: the feed, or the log for whatever the feed no longer keeps
            await feed.wait_beyond(covered)
            events = feed.since(covered)
            if events is None:
                rows = await company_events(
                    db,
                    company_id=company_id,
                    after_seq=covered,
                    upto_seq=feed.seq,
                    limit=REPLAY_PAGE,
                )
                events = [LiveEvent(row) for row in rows]
            for event in events:
                row = event.row
                covered = row.company_seq
                if (row.id or 0) <= after or (batch_id and row.batch_id != batch_id):
                    continue
                yield event
                if batch_id and _ends_batch(row):
                    return


def _ends_batch(row: SyncEventRow) -> bool:
    return row.item_id is None and row.to_status in TERMINAL_BATCH_STATUSES


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Every transition of the batch; completes when it ends.")
    async def sync_batch_events(
        self, info: Info, batch_id: strawberry.ID, after_event_id: strawberry.ID | None = None
    ) -> AsyncIterator[SyncEvent]:
        arguments = {"batchId": batch_id, "afterEventId": after_event_id}
        async for event in await open_stream(info.context, "syncBatchEvents", arguments):
            yield SyncEvent.from_row(event.row)

    @strawberry.subscription(description="Every transition of every batch of the company.")
    async def company_sync_events(
        self, info: Info, company_id: strawberry.ID, after_event_id: strawberry.ID | None = None
    ) -> AsyncIterator[SyncEvent]:
        arguments = {"companyId": company_id, "afterEventId": after_event_id}
        async for event in await open_stream(info.context, "companySyncEvents", arguments):
            yield SyncEvent.from_row(event.row)
