"""Errors, one tree.

    AppError                  every expected failure; `code` is what clients see
    ├── Unauthenticated       no key, or a key that is not a company's
    ├── NotFound              missing, malformed, or another company's id
    ├── Conflict              the row is not in a state that allows the request
    ├── InvalidInput          a value the API refuses; `field` names its path
    ├── EventsExpired         a stream asked to resume where retention removed the log
    └── LedgerError           the ledger refused a push; its `error.code` classifies it

`SyncErrorCode` is the classification of a failed sync item, each with a hint on what to do.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class SyncErrorCode(StrEnum):
    INVALID_ACCOUNT_ID = "INVALID_ACCOUNT_ID"
    INVALID_TAX_RATE_ID = "INVALID_TAX_RATE_ID"
    CONNECTION_EXPIRED = "CONNECTION_EXPIRED"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    ATTACHMENT_TOO_LARGE = "ATTACHMENT_TOO_LARGE"
    UNSUPPORTED_FILE_TYPE = "UNSUPPORTED_FILE_TYPE"
    LEDGER_CONFLICT = "LEDGER_CONFLICT"


HINTS: dict[SyncErrorCode, str] = {
    SyncErrorCode.INVALID_ACCOUNT_ID: (
        "Verify the account ID, or create the account first (createAccount), then retry."
    ),
    SyncErrorCode.INVALID_TAX_RATE_ID: (
        "Verify the tax rate ID, or create the tax rate first (createTaxRate), then retry."
    ),
    SyncErrorCode.CONNECTION_EXPIRED: (
        "Reconnect the accounting system via Link, then retry the failed items."
    ),
    SyncErrorCode.RATE_LIMIT_EXCEEDED: (
        "The accounting system is throttling requests: wait, then retry with exponential backoff."
    ),
    SyncErrorCode.VALIDATION_ERROR: (
        "Fix the record as the message says and send it with updateExpenses (updateBills,"
        " updateInvoices): the update puts the corrected record in the ledger."
    ),
    SyncErrorCode.PROVIDER_ERROR: (
        "The accounting system failed to answer: retry later; contact support if it persists."
    ),
    SyncErrorCode.ATTACHMENT_TOO_LARGE: (
        "Send a smaller file (compress or scan at a lower resolution): the limit is the"
        " ledger's, or MAX_UPLOAD_BYTES."
    ),
    SyncErrorCode.UNSUPPORTED_FILE_TYPE: (
        "Send a PDF, PNG, JPEG, HEIC, WebP or TIFF file; the type is read from its content."
    ),
    SyncErrorCode.LEDGER_CONFLICT: (
        "The document was changed in the ledger since our last push: check it there, then send"
        " the update (or void) again with force: true to overwrite the ledger's changes."
    ),
}

TRANSIENT = frozenset({SyncErrorCode.RATE_LIMIT_EXCEEDED, SyncErrorCode.PROVIDER_ERROR})
"""What the worker retries by itself, with backoff, before the item fails."""
RETRYABLE = TRANSIENT | {SyncErrorCode.CONNECTION_EXPIRED}
"""What may succeed when the client retries (after reconnecting, for an expired connection)."""


@dataclass(frozen=True)
class SyncError:
    """Why an item (or a whole batch) failed: stored on the row and carried by its event."""

    code: SyncErrorCode
    message: str

    @property
    def hint(self) -> str:
        return HINTS[self.code]

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE


class AppError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, **extensions: Any) -> None:  # Any: JSON-able extras
        super().__init__(message)
        self.message = message
        self.extensions = extensions

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class Unauthenticated(AppError):
    code = "UNAUTHENTICATED"


class NotFound(AppError):
    code = "NOT_FOUND"


class Conflict(AppError):
    code = "CONFLICT"


class InvalidInput(AppError):
    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, field: str, **extensions: Any) -> None:
        super().__init__(message, field=field, **extensions)
        self.field = field


class EventsExpired(AppError):
    code = "EVENTS_EXPIRED"


class LedgerError(AppError):
    code = "LEDGER_ERROR"

    def __init__(
        self, sync_code: SyncErrorCode, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message, syncCode=sync_code.value)
        self.error = SyncError(sync_code, message)
        self.retry_after = retry_after  # seconds, when the ledger said (HTTP Retry-After)
