"""The sandbox ledger's adapter: validates and posts records the way a real ledger does.

Its books live in our database (`models.sandbox`), so the API process and every worker see
the same ledger. It answers with Xero's wording, which the classification maps from.
"""

from sqlalchemy.exc import IntegrityError

from models import sandbox
from models.db import Database
from models.enums import EXPENSE_ACCOUNT_TYPES, INCOME_ACCOUNT_TYPES, AccountType
from models.errors import Conflict, LedgerError, SyncErrorCode
from models.ledger import Account, TaxRate
from models.records import Bill, Expense, Invoice, Line, dump_record
from models.tables import new_id


class SandboxLedger:
    def __init__(self, db: Database, *, company_id: str) -> None:
        self.db = db
        self.company_id = company_id

    async def push(self, record: Expense | Bill | Invoice, *, idempotency_key: str) -> str:
        async with self.db.transaction() as session:
            posted = await sandbox.record_by_key(
                session, company_id=self.company_id, idempotency_key=idempotency_key
            )
            if posted is not None:
                return posted.external_id
            accounts = {
                a.code: a for a in await sandbox.accounts(session, company_id=self.company_id)
            }
            tax_rates = {
                t.code for t in await sandbox.tax_rates(session, company_id=self.company_id)
            }
            _validate(record, accounts, tax_rates)
            external_id = new_id("sbx")
            session.add(
                sandbox.SandboxRecord(
                    external_id=external_id,
                    company_id=self.company_id,
                    idempotency_key=idempotency_key,
                    record_type=record.record_type,
                    amount=str(record.total),
                    currency=record.currency,
                    reference=record.reference,
                    payload=dump_record(record),
                )
            )
        return external_id

    async def accounts(self) -> list[Account]:
        async with self.db.sessions() as session:
            return await sandbox.accounts(session, company_id=self.company_id)

    async def tax_rates(self) -> list[TaxRate]:
        async with self.db.sessions() as session:
            return await sandbox.tax_rates(session, company_id=self.company_id)

    async def create_account(self, account: Account) -> Account:
        row = sandbox.SandboxAccount(
            company_id=self.company_id, code=account.code, name=account.name, type=account.type
        )
        await self._insert(row, f"account code '{account.code}' already exists")
        return account

    async def create_tax_rate(self, tax_rate: TaxRate) -> TaxRate:
        row = sandbox.SandboxTaxRate(
            company_id=self.company_id,
            code=tax_rate.code,
            name=tax_rate.name,
            rate=str(tax_rate.rate),
        )
        await self._insert(row, f"tax rate code '{tax_rate.code}' already exists")
        return tax_rate

    async def _insert(
        self, row: sandbox.SandboxAccount | sandbox.SandboxTaxRate, taken: str
    ) -> None:
        try:
            async with self.db.transaction() as session:
                session.add(row)
        except IntegrityError:
            raise Conflict(taken, field="input.code") from None


def _validate(
    record: Expense | Bill | Invoice, accounts: dict[str, Account], tax_rates: set[str]
) -> None:
    """Refuse what a ledger refuses: unknown codes, the wrong kind of account, empty totals."""
    allowed = INCOME_ACCOUNT_TYPES if isinstance(record, Invoice) else EXPENSE_ACCOUNT_TYPES
    kind = "an invoice" if isinstance(record, Invoice) else f"a {record.record_type.lower()}"
    lines = (
        [Line(amount=record.amount, account_id=record.account_id, tax_rate_id=record.tax_rate_id)]
        if isinstance(record, Expense)
        else record.lines
    )
    for line in lines:
        account = accounts.get(line.account_id)
        if account is None:
            raise LedgerError(
                SyncErrorCode.INVALID_ACCOUNT_ID,
                f"Account code '{line.account_id}' is not a valid code for this document.",
            )
        if account.type not in allowed:
            raise LedgerError(
                SyncErrorCode.VALIDATION_ERROR,
                f"Account code '{account.code}' is a {AccountType(account.type).value} account "
                f"and cannot be used on {kind}.",
            )
        if line.tax_rate_id is not None and line.tax_rate_id not in tax_rates:
            raise LedgerError(
                SyncErrorCode.INVALID_TAX_RATE_ID,
                f"The TaxType code '{line.tax_rate_id}' is not a valid tax type.",
            )
    if record.total <= 0:
        raise LedgerError(SyncErrorCode.VALIDATION_ERROR, "The document total must be positive.")
