"""Process logging: one JSON object a line, ids as fields, secrets never written.

Log calls name what they are about in `extra` (`company_id`, `batch_id`, `item_id`, …), so a
log pipeline can filter by them; a line written inside a trace carries its `trace_id`, so a
tracing tool's span leads to its lines and back. `LOG_FORMAT=text` gives the same records for
a terminal.
"""

import logging
import re
import sys
from types import TracebackType
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from infra.settings import Settings
from infra.tracing import current_trace_id

_SECRET = re.compile(r"token|secret|password|authorization|api_?key", re.IGNORECASE)
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
REDACTED = "[redacted]"


class Redact(logging.Filter):
    """Blank any extra field whose name says it holds a secret, whoever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in record.__dict__.keys() - _STANDARD:
            if _SECRET.search(name):
                setattr(record, name, REDACTED)
        return True


class TraceIds(logging.Filter):
    """Name the trace a line was written in (tracing on, inside a span)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (trace_id := current_trace_id()) is not None:
            record.trace_id = trace_id
        return True


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        return line if trace_id is None else f"{line} trace_id={trace_id}"


def configure_logging(settings: Settings) -> None:
    """Route every logger (ours, uvicorn's, arq's) through one handler on stderr."""
    handler = logging.StreamHandler()
    formatter: logging.Formatter
    if settings.log_format == "text":
        formatter = _Text("%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        formatter = JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_default=_plain,
        )
    handler.setFormatter(formatter)
    handler.addFilter(Redact())
    handler.addFilter(TraceIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for noisy in ("arq", "alembic"):  # a line per job each second; each migration step
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sys.excepthook = _log_uncaught  # a crash is a line too, not a bare traceback


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("sync2books").critical("uncaught %s", kind.__name__, exc_info=(kind, exc, tb))


def _plain(value: Any) -> str:  # Any: whatever a caller put in `extra`
    return str(value)
