"""Keyset (cursor) pagination, both ways, for Relay connections: no OFFSET at any depth."""

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import (
    ColumnElement,
    Select,
    asc,
    desc,
    exists,
    func,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, aliased
from sqlmodel import SQLModel

from models.errors import InvalidInput

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

T = TypeVar("T")
M = TypeVar("M", bound=SQLModel)


@dataclass(frozen=True)
class PageRequest:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None

    @property
    def backward(self) -> bool:
        return self.last is not None or self.before is not None

    @property
    def has_cursor(self) -> bool:
        return self.after is not None or self.before is not None


@dataclass(frozen=True)
class Key:
    """One ordering column of a keyset and how its cursor value reads back."""

    column: Mapped[Any]  # Any: the column's own type
    parse: Callable[[str], Any]  # Any: the column's own type


Keyset = tuple[Any, ...]  # Any: a row's values of the ordering columns, which its cursor encodes


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[tuple[Keyset, T]]  # encoded only if a client asks for the row's cursor
    has_next: bool
    has_previous: bool
    total: int


def encode_cursor(values: Keyset) -> str:
    raw = json.dumps([str(v.isoformat() if hasattr(v, "isoformat") else v) for v in values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, keys: Sequence[Key], field: str) -> tuple[Any, ...]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(keys):
            raise ValueError(cursor)
        return tuple(key.parse(value) for key, value in zip(keys, raw, strict=True))
    except ValueError:
        raise InvalidInput(f"{field}: not a cursor of this list", field=field) from None


def page_size(request: PageRequest) -> int:
    """The page's size: the default, or what was asked within the bounds (else BAD_USER_INPUT)."""
    if (request.first is not None or request.after is not None) and request.backward:
        raise InvalidInput("page with first/after or with last/before, not both", field="last")
    field, size = ("last", request.last) if request.backward else ("first", request.first)
    if size is None:
        return DEFAULT_PAGE_SIZE
    if not 0 <= size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"{field}: must be between 0 and {MAX_PAGE_SIZE}", field=field)
    return size


async def paginate(
    session: AsyncSession,
    query: Select[T],
    *,
    keys: Sequence[Key],
    descending: bool,
    request: PageRequest,
    key_of: Callable[[T], Keyset],
    total: int | None = None,
) -> Page[T]:
    """One page of `query` (already filtered) ordered by `keys`, newest first when `descending`;
    its rows are counted for the page's total unless the caller knows it."""
    size = page_size(request)
    columns = tuple_(*(key.column for key in keys))
    backward = request.backward
    cursor_field = "before" if backward else "after"
    cursor = request.before if backward else request.after
    # Walking backward through a descending list is walking forward through an ascending one.
    ascending = descending == backward
    ahead: Callable[[Any], ColumnElement[bool]] = (
        (lambda v: columns > v) if ascending else (lambda v: columns < v)
    )
    behind: Callable[[Any], ColumnElement[bool]] = (
        (lambda v: columns <= v) if ascending else (lambda v: columns >= v)
    )
    page_query = query
    seen_before = False
    if cursor is not None:
        position = tuple_(*_decode_cursor(cursor, keys, cursor_field))
        page_query = page_query.where(ahead(position))
        seen_before = bool(
            await session.scalar(select(exists(query.where(behind(position)).subquery())))
        )
    order = [asc(key.column) if ascending else desc(key.column) for key in keys]
    result = await session.execute(page_query.order_by(*order).limit(size + 1))
    rows = list(result.scalars())
    more = len(rows) > size
    rows = rows[:size]
    if backward:
        rows.reverse()
    if total is None:
        total = await session.scalar(select(func.count()).select_from(query.subquery()))
    return Page(
        rows=[(key_of(row), row) for row in rows],
        has_next=seen_before if backward else more,
        has_previous=more if backward else seen_before,
        total=total or 0,
    )


async def end_pages(
    session: AsyncSession,
    model: type[M],
    *,
    where: Sequence[ColumnElement[bool]],
    group: str,
    groups: Sequence[Any],  # Any: the group column's own type
    keys: Sequence[Key],
    descending: bool,
    request: PageRequest,
    key_of: Callable[[M], Keyset],
) -> list[Page[M]]:
    """The first page (or, with `last`, the last) of `model`'s rows in each of `groups` (values
    of its column `group`), in one query however many groups: rows are ranked and counted
    within their group by window functions. A nested connection (`syncBatches { items(first:
    10) }`) costs one query, not one per parent. Pages after a cursor belong to one group:
    `paginate` serves those."""
    assert not request.has_cursor, "a cursor names a place in one group's list"
    size = page_size(request)
    ascending = descending == request.backward  # as in `paginate`
    order = [key.column.asc() if ascending else key.column.desc() for key in keys]
    column = model.__table__.c[group]  # type: ignore[attr-defined]
    ranked = (
        select(
            model,
            func.row_number().over(partition_by=column, order_by=order).label("rank"),
            func.count().over(partition_by=column).label("total"),
        )
        .where(column.in_(groups), *where)
        .subquery()
    )
    row = aliased(model, ranked)
    result = await session.execute(
        select(row, ranked.c.total).where(ranked.c.rank <= size + 1).order_by(ranked.c.rank)
    )
    found: dict[Any, tuple[list[M], int]] = {}
    for item, total in result:
        found.setdefault(getattr(item, group), ([], total))[0].append(item)
    pages = []
    for parent in groups:
        rows, total = found.get(parent, ([], 0))
        more = len(rows) > size
        rows = rows[:size]
        if request.backward:
            rows.reverse()
        pages.append(
            Page(
                rows=[(key_of(r), r) for r in rows],
                has_next=False if request.backward else more,
                has_previous=more if request.backward else False,
                total=total,
            )
        )
    return pages
