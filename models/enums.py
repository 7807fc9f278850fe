"""The statuses and kinds every layer speaks of, spelled once."""

from enum import StrEnum


class RecordType(StrEnum):
    EXPENSE = "EXPENSE"
    BILL = "BILL"
    INVOICE = "INVOICE"


class SyncOperation(StrEnum):
    """What an item does to its record in the ledger."""

    CREATE = "CREATE"
    UPDATE = "UPDATE"
    VOID = "VOID"


CONTENT_OPERATIONS = frozenset({SyncOperation.CREATE, SyncOperation.UPDATE})
"""The operations that carry the record's whole content: a later one supersedes an earlier."""


class LineAmountTypes(StrEnum):
    """How a record's line amounts read: before tax (the default), with tax included, or
    untaxed (Xero's `LineAmountTypes`, QuickBooks' `GlobalTaxCalculation`)."""

    EXCLUSIVE = "EXCLUSIVE"
    INCLUSIVE = "INCLUSIVE"
    NO_TAX = "NO_TAX"


class BatchStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


class ItemStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


class SyncStatus(StrEnum):
    """Any status an event moves between: a batch's or an item's."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    COMPLETED = "COMPLETED"


class LimitHold(StrEnum):
    """A ledger limit that can put a call off (`ledgers.limiter`)."""

    CONNECTION = "CONNECTION"
    DAY = "DAY"
    APP = "APP"


class ConnectionStatus(StrEnum):
    ACTIVE = "ACTIVE"
    EXPIRED = "EXPIRED"
    DISCONNECTED = "DISCONNECTED"


class Provider(StrEnum):
    SANDBOX = "sandbox"
    QUICKBOOKS = "quickbooks"
    XERO = "xero"


class AccountType(StrEnum):
    """Xero's account classes that records post to, and the accounts that pay (`BANK`,
    `CREDITCARD`)."""

    REVENUE = "REVENUE"
    SALES = "SALES"
    OTHERINCOME = "OTHERINCOME"
    DIRECTCOSTS = "DIRECTCOSTS"
    EXPENSE = "EXPENSE"
    OVERHEADS = "OVERHEADS"
    BANK = "BANK"
    CREDITCARD = "CREDITCARD"  # Xero's bank account of type CREDITCARD; QuickBooks' Credit Card


INCOME_ACCOUNT_TYPES = frozenset({AccountType.REVENUE, AccountType.SALES, AccountType.OTHERINCOME})
EXPENSE_ACCOUNT_TYPES = frozenset(
    {AccountType.EXPENSE, AccountType.OVERHEADS, AccountType.DIRECTCOSTS}
)

PAYMENT_ACCOUNT_TYPES = frozenset({AccountType.BANK, AccountType.CREDITCARD})

TERMINAL_ITEM_STATUSES = frozenset({ItemStatus.SUCCESS, ItemStatus.FAILED})
TERMINAL_BATCH_STATUSES = frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED})


class AlertKind(StrEnum):
    FAILURE_RATE = "FAILURE_RATE"
    CONNECTION_EXPIRED = "CONNECTION_EXPIRED"


class AlertStatus(StrEnum):
    ACTIVE = "ACTIVE"
    CLEARED = "CLEARED"


class WebhookEventType(StrEnum):
    """What an endpoint may subscribe to; the value is the payload's `type`."""

    BATCH_COMPLETED = "batch.completed"
    BATCH_FAILED = "batch.failed"
    ITEM_FAILED = "item.failed"
    ALERT_RAISED = "alert.raised"
    ALERT_CLEARED = "alert.cleared"
    CONNECTION_EXPIRED = "connection.expired"


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"  # due at `next_attempt_at`
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # every scheduled attempt failed (a replay tries once more)
