"""The database as every process opens it: readers never hold writers up, writers queue."""

import asyncio

from sqlalchemy import select, update
from sqlmodel import col

from infra.services import Services
from models.company import NewCompany
from models.tables import Company


async def _name(services: Services, company: NewCompany) -> str:
    async with services.db.sessions() as session:
        row = await session.get(Company, company.company.id)
        assert row is not None
        return row.name


async def test_an_open_reader_never_holds_a_writer_up(
    services: Services, company: NewCompany
) -> None:
    async with services.db.sessions() as reader:  # as a cancelled subscription may leave one
        assert await reader.scalar(select(col(Company.name))) == "Acme Ltd"
        async with asyncio.timeout(5), services.db.transaction() as session:
            row = await session.get(Company, company.company.id)
            assert row is not None
            row.name = "Renamed Ltd"
    assert await _name(services, company) == "Renamed Ltd"


async def test_writers_that_read_first_queue_instead_of_failing(
    services: Services, company: NewCompany
) -> None:
    async def append(suffix: str) -> None:
        async with services.db.transaction() as session:
            assert await session.get(Company, company.company.id) is not None
            await asyncio.sleep(0.05)  # the others would have read too, and then all write
            named = col(Company.name) + suffix
            await session.execute(
                update(Company).where(col(Company.id) == company.company.id).values(name=named)
            )

    await asyncio.gather(*(append(str(n)) for n in range(4)))
    assert sorted(await _name(services, company)) == sorted("Acme Ltd0123")
