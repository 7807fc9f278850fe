"""Preflight over GraphQL: the `validate*` dry runs and the create mutations' `preflight`."""

from collections.abc import Sequence

import strawberry

from api.context import Context
from ledgers.chart import Problem, problems
from models.errors import InvalidInput, SyncErrorCode
from models.records import Bill, Expense, Invoice


@strawberry.type(description="A value the ledger would refuse, found before anything is queued.")
class RecordProblem:
    index: int = strawberry.field(description="The record's position in the request.")
    field: str = strawberry.field(description="The GraphQL path of the value, as in errors.")
    code: SyncErrorCode
    message: str
    hint: str

    @classmethod
    def from_problem(cls, problem: Problem) -> "RecordProblem":
        return cls(
            index=problem.index,
            field=problem.field,
            code=problem.code,
            message=problem.message,
            hint=problem.hint,
        )


async def ledger_problems(
    ctx: Context, company_id: str, records: Sequence[Expense | Bill | Invoice], *, field: str
) -> list[Problem]:
    """What the company's ledger would refuse in the records, checked against its chart."""
    gateway = await ctx.ledger(company_id)
    return problems(records, await gateway.chart(), field=field)


def preflight_refused(found: Sequence[Problem]) -> InvalidInput:
    """BAD_USER_INPUT naming the first problem, with all of them in `extensions.problems`."""
    first = found[0]
    listed = [
        {"index": p.index, "field": p.field, "code": p.code, "message": p.message, "hint": p.hint}
        for p in found
    ]
    return InvalidInput(
        f"{first.field}: {first.message} ({len(found)} problem(s); nothing was queued)",
        field=first.field,
        problems=listed,
    )
