"""Live status events: replay from the log after `afterEventId`, then follow the hub.

A `Follower` keeps one subscription's place for both paths that deliver: Strawberry's own
resolvers (`follow`, used by the legacy graphql-ws protocol) and the shared
graphql-transport-ws path in `api/live_ws.py`. It never misses or repeats an event: the
replay reads the log up to the number the feed stood at when the subscription joined it, and
the live part continues from exactly that number.

`syncBatchEvents` completes after the batch's terminal event (COMPLETED or FAILED), as a
poller would stop; subscribing to a batch that is already terminal replays what follows
`afterEventId` and completes. A retry reopens the batch for new subscriptions.
"""

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime

import strawberry

from api.context import Context, Info
from api.hub import Feed, LiveEvent
from api.types import SyncError
from infra.db import Database
from models.batch import get_batch
from models.enums import TERMINAL_BATCH_STATUSES, SyncOperation, SyncStatus
from models.errors import InvalidInput, NotFound
from models.events import company_events, last_batch_event
from models.history import check_replayable, check_resumable
from models.tables import SyncEvent as SyncEventRow

REPLAY_PAGE = 500


@strawberry.type(
    description="One status transition of a batch (itemId null), of an item, or of an item's "
    "attachment (attachmentId set, with its item's itemId)."
)
class SyncEvent:
    event_id: strawberry.ID = strawberry.field(
        description="A decimal integer, increasing with every event: compare it as a number."
    )
    company_id: strawberry.ID
    batch_id: strawberry.ID
    item_id: strawberry.ID | None
    attachment_id: strawberry.ID | None
    operation: SyncOperation | None = strawberry.field(
        description="What the item does to its record (CREATE, UPDATE, VOID), on an item's "
        "events; null on a batch's and an attachment's."
    )
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
            attachment_id=strawberry.ID(row.attachment_id) if row.attachment_id else None,
            operation=SyncOperation(row.operation) if row.operation else None,
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


@dataclass(frozen=True, slots=True)
class Interest:
    """What one authorised subscription asked for."""

    company_id: str
    batch_id: str | None  # None: every batch of the company
    after: int | None  # the event id after which it starts; None: from now on, no replay


async def authorise(ctx: Context, field: str, arguments: Mapping[str, str | None]) -> Interest:
    """Check a subscription field's arguments against the caller's company. A company's
    stream without `afterEventId` starts from now: its history may be millions of events."""
    after = parse_after(arguments.get("afterEventId"))
    if field == "syncBatchEvents":
        batch_id = arguments["batchId"] or ""
        batch = await get_batch(ctx.services.db, company_id=ctx.company.id, batch_id=batch_id)
        if batch is None:
            raise NotFound(f"batch {batch_id} not found")
        interest = Interest(batch.company_id, batch.id, after)
    else:
        from_now = arguments.get("afterEventId") is None
        company_id = ctx.own(arguments["companyId"] or "")
        interest = Interest(company_id, None, None if from_now else after)
    db = ctx.services.db
    if arguments.get("afterEventId") is not None:
        await check_resumable(db, company_id=interest.company_id, after=after)
    elif interest.batch_id is not None:  # replayed from its first event
        await check_replayable(db, company_id=interest.company_id, batch_id=interest.batch_id)
    return interest


class Follower:
    """Where one subscription stands in its company's numbered events, and which it wants.

    `covered` is the last `company_seq` it has dealt with, starting where the feed stood when
    it joined: `replay` reads the log up to there, and every later event passes through
    `take`, whichever path (the feed, the log) brought it. `done` once its batch has ended.
    """

    __slots__ = ("covered", "db", "done", "feed", "interest")

    def __init__(self, db: Database, feed: Feed, interest: Interest) -> None:
        self.db = db
        self.feed = feed
        self.interest = interest
        self.covered = feed.seq
        self.done = False

    async def replay(self) -> AsyncGenerator[list[LiveEvent], None]:
        """The log after `after` up to `covered`, a page at a time (nothing from now on)."""
        company_id, batch_id, after = (
            self.interest.company_id,
            self.interest.batch_id,
            self.interest.after,
        )
        if after is None:
            return
        ended = False
        if batch_id is not None:  # already over, as far as the log up to `covered` knows?
            last = await last_batch_event(self.db, batch_id=batch_id)
            ended = last is not None and _ends_batch(last) and last.company_seq <= self.covered
        replayed = 0
        while True:
            page = await company_events(
                self.db,
                company_id=company_id,
                after_seq=replayed,
                upto_seq=self.covered,
                limit=REPLAY_PAGE,
                batch_id=batch_id,
            )
            yield [LiveEvent(row) for row in page if (row.id or 0) > after]
            if len(page) < REPLAY_PAGE:
                break
            replayed = page[-1].company_seq
        self.done = ended

    def take(self, events: Sequence[LiveEvent]) -> list[LiveEvent]:
        """The wanted ones of the events that follow `covered`, up to the batch's end."""
        batch_id, after = self.interest.batch_id, self.interest.after or 0
        wanted = []
        for event in events:
            row = event.row
            self.covered = row.company_seq
            if (row.id or 0) <= after or (batch_id and row.batch_id != batch_id):
                continue
            wanted.append(event)
            if batch_id and _ends_batch(row):
                self.done = True
                break
        return wanted

    async def catch_up(self) -> list[LiveEvent]:
        """What follows `covered`: from the feed, or from the log when the feed let it go."""
        events = self.feed.since(self.covered)
        if events is None:
            rows = await company_events(
                self.db,
                company_id=self.interest.company_id,
                after_seq=self.covered,
                upto_seq=self.feed.seq,
                limit=REPLAY_PAGE,
            )
            events = [LiveEvent(row) for row in rows]
        return self.take(events)


async def follow(ctx: Context, interest: Interest) -> AsyncGenerator[LiveEvent, None]:
    """The interest's events: the log's, then the feed's."""
    async with ctx.hub.feed(interest.company_id) as feed:
        follower = Follower(ctx.services.db, feed, interest)
        feed.join(follower)
        try:
            async with aclosing(follower.replay()) as pages:
                async for page in pages:
                    for event in page:
                        yield event
            del pages  # done with, it would still hold ~0.6 KiB for the subscription's life
            while not follower.done:
                await feed.wait_beyond(follower.covered)
                for event in await follower.catch_up():
                    yield event
        finally:
            feed.leave(follower)


def _ends_batch(row: SyncEventRow) -> bool:
    return row.item_id is None and row.to_status in TERMINAL_BATCH_STATUSES


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Every transition of the batch; completes when it ends.")
    async def sync_batch_events(
        self, info: Info, batch_id: strawberry.ID, after_event_id: strawberry.ID | None = None
    ) -> AsyncIterator[SyncEvent]:
        arguments = {"batchId": batch_id, "afterEventId": after_event_id}
        interest = await authorise(info.context, "syncBatchEvents", arguments)
        async for event in follow(info.context, interest):
            yield SyncEvent.from_row(event.row)

    @strawberry.subscription(
        description="Every transition of every batch of the company from now on, or after "
        "`afterEventId` (see `Company.lastEventId`)."
    )
    async def company_sync_events(
        self, info: Info, company_id: strawberry.ID, after_event_id: strawberry.ID | None = None
    ) -> AsyncIterator[SyncEvent]:
        arguments = {"companyId": company_id, "afterEventId": after_event_id}
        interest = await authorise(info.context, "companySyncEvents", arguments)
        async for event in follow(info.context, interest):
            yield SyncEvent.from_row(event.row)
