"""`sync2books`: serve, work, manage companies, export the schema, inspect the sandbox."""

import argparse
import asyncio
import json
import shlex
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation

from cryptography.fernet import Fernet

from api.logs import configure_logging
from infra import data_dir, tracing
from infra.db import connect
from infra.services import redis_client
from infra.settings import Settings
from infra.storage import open_storage
from infra.vault import SecretKeyError, load_vault
from ledgers import books as sandbox
from ledgers import create_company
from models import history, money
from models.company import replace_key
from models.connections import reseal_tokens
from models.enums import Provider
from models.errors import AppError, NotFound
from models.migrate import migrate
from models.records import Expense, load_record
from models.sandbox import SandboxAttachment, SandboxRecord
from models.tables import Company, utcnow


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings)
    if not args.stateless and data_dir.needed(settings):
        data_dir.prepare(settings)
    handler: Callable[[argparse.Namespace, Settings], None] = args.handler
    try:
        handler(args, settings)
    except SecretKeyError as exc:
        raise SystemExit(f"sync2books: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sync2books", description=__doc__)
    parser.set_defaults(stateless=False)  # True: a command that writes nothing to DATA_DIR
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the API (embedded default without REDIS_URL)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="run an arq worker (production)")
    worker.set_defaults(handler=_worker)

    company = commands.add_parser("create-company", help="create a company, print its API key")
    company.add_argument("--name", required=True)
    company.add_argument("--provider", choices=[p.value for p in Provider], default="sandbox")
    company.add_argument(
        "--shell",
        action="store_true",
        help="print export lines of SYNC2BOOKS_COMPANY_ID and SYNC2BOOKS_API_KEY, for eval",
    )
    company.set_defaults(handler=lambda a, s: _run(_create_company(a, s)))

    rotate = commands.add_parser("rotate-key", help="give a company a new API key, print it")
    rotate.add_argument("--company-id", required=True)
    rotate.set_defaults(handler=lambda a, s: _run(_replace_key(a, s, show=True)))
    revoke = commands.add_parser("revoke-key", help="make a company's API key stop working")
    revoke.add_argument("--company-id", required=True)
    revoke.set_defaults(handler=lambda a, s: _run(_replace_key(a, s, show=False)))

    keygen = commands.add_parser(
        "generate-secret-key", help="print a new key for SECRET_KEY (seals ledger tokens)"
    )
    keygen.set_defaults(handler=lambda _, s: print(Fernet.generate_key().decode()), stateless=True)
    reseal = commands.add_parser(
        "reseal-tokens",
        help="seal every ledger token with SECRET_KEY's first key, so older keys can be dropped",
    )
    reseal.set_defaults(handler=lambda _, s: _run(_reseal_tokens(s)))

    schema = commands.add_parser("export-schema", help="print the GraphQL SDL")
    schema.set_defaults(handler=_print_schema, stateless=True)

    sandbox_cmd = commands.add_parser("sandbox", help="inspect the sandbox ledger")
    sandbox_commands = sandbox_cmd.add_subparsers(required=True, metavar="COMMAND")
    records = sandbox_commands.add_parser("records", help="print posted records, one JSON a line")
    records.add_argument("--company-id", required=True)
    records.set_defaults(handler=lambda a, s: _run(_sandbox_records(a, s)))
    edit = sandbox_commands.add_parser(
        "edit", help="change a document as an accountant would in the ledger; print it"
    )
    edit.add_argument("--company-id", required=True)
    edit.add_argument("--external-id", required=True)
    edit.add_argument("--amount", type=_amount, metavar="A", help="an expense's, or line 1's")
    edit.add_argument("--description", metavar="D")
    edit.set_defaults(handler=lambda a, s: _run(_sandbox_edit(a, s)))
    configure = sandbox_commands.add_parser(
        "configure", help="change how a company's sandbox behaves from now on; print it"
    )
    configure.add_argument("--company-id", required=True)
    configure.add_argument("--rate-limit-per-minute", type=_positive, metavar="N")
    configure.add_argument("--max-concurrent", type=_positive, metavar="N")
    configure.add_argument(
        "--documents-per-call", type=_positive, metavar="N", help="records a push carries (50)"
    )
    configure.add_argument("--transient-error-rate", type=_share, metavar="F")
    configure.add_argument("--latency-ms", type=int, metavar="MS")
    configure.add_argument(
        "--timeout-rate", type=_share, metavar="F", help="posts recorded, yet answered late"
    )
    configure.add_argument(
        "--expire-token", action="store_true", help="expire its tokens, refresh too: `reconnect`"
    )
    configure.add_argument(
        "--expire-access-token", action="store_true", help="as after 30 minutes: refreshable"
    )
    configure.set_defaults(handler=lambda a, s: _run(_sandbox_configure(a, s)))

    history = commands.add_parser("history", help="the event log's retention and its archives")
    history_commands = history.add_subparsers(required=True, metavar="COMMAND")
    sweep = history_commands.add_parser(
        "sweep", help="make partitions ahead and remove what is past retention now; print it"
    )
    sweep.set_defaults(handler=lambda a, s: _run(_history_sweep(s)))
    listed = history_commands.add_parser("archives", help="list the archived months")
    listed.set_defaults(handler=lambda a, s: _history_archives(s))
    read = history_commands.add_parser("read", help="print an archive, one JSON row a line")
    read.add_argument("name", help="as `history archives` lists it")
    read.set_defaults(handler=_history_read)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("a whole number of at least 1")
    return value


def _amount(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise argparse.ArgumentTypeError("an amount, e.g. 12.50") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError("an amount greater than 0")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("a share between 0 and 1")
    return value


def _serve(args: argparse.Namespace, settings: Settings) -> None:
    # The server's imports (the app, the schema, uvicorn) are paid for by `serve` and `worker`
    # alone: the other commands start in about a second.
    import uvicorn

    from api.app import create_app
    from api.runtime import serve_runtime
    from api.serving import server_options

    load_vault(settings)  # a missing SECRET_KEY stops here, not in the server's startup
    with tracing.configured(settings, "sync2books-api"):
        uvicorn.run(
            create_app(settings, runtime=serve_runtime),
            host=args.host,
            port=args.port,
            log_config=None,  # our handler (api/logs.py), already set up
            **server_options(settings),
        )


def _worker(_: argparse.Namespace, settings: Settings) -> None:
    import uvloop

    from api.runtime import run_worker

    with tracing.configured(settings, "sync2books-worker"):
        uvloop.run(run_worker(settings))  # on uvloop, as uvicorn serves


def _print_schema(_: argparse.Namespace, __: Settings) -> None:
    from api.schema import sdl

    sys.stdout.write(sdl())


def _run(command: Awaitable[None]) -> None:
    asyncio.run(command)  # type: ignore[arg-type]


async def _create_company(args: argparse.Namespace, settings: Settings) -> None:
    vault = load_vault(settings)
    await migrate(settings.async_database_url)
    db = connect(settings.async_database_url)
    try:
        created = await create_company(db, vault, name=args.name, provider=Provider(args.provider))
    finally:
        await db.dispose()
    if args.shell:  # for `eval "$(sync2books create-company … --shell)"`
        print(f"export SYNC2BOOKS_COMPANY_ID={shlex.quote(created.company.id)}")
        print(f"export SYNC2BOOKS_API_KEY={shlex.quote(created.api_key)}")
        return
    shown = {"companyId": created.company.id, "name": created.company.name}
    print(json.dumps(shown | {"apiKey": created.api_key}))


async def _sandbox_records(args: argparse.Namespace, settings: Settings) -> None:
    await migrate(settings.async_database_url)
    db = connect(settings.async_database_url)
    try:
        async with db.sessions() as session:
            rows = await sandbox.records(session, company_id=args.company_id)
            files = await sandbox.attachments(session, company_id=args.company_id)
            rates = await sandbox.tax_rates(session, company_id=args.company_id)
    finally:
        await db.dispose()
    percents = {rate.code: rate.rate for rate in rates}
    for row in rows:
        print(_document_line(row, files.get(row.external_id, []), percents))


async def _sandbox_edit(args: argparse.Namespace, settings: Settings) -> None:
    await migrate(settings.async_database_url)
    db = connect(settings.async_database_url)
    try:
        async with db.transaction() as session:
            row = await sandbox.edit(
                session,
                company_id=args.company_id,
                external_id=args.external_id,
                amount=args.amount,
                description=args.description,
            )
            files = await sandbox.attachments(session, company_id=args.company_id)
            rates = await sandbox.tax_rates(session, company_id=args.company_id)
    except AppError as refused:
        raise SystemExit(refused.message) from None
    finally:
        await db.dispose()
    percents = {rate.code: rate.rate for rate in rates}
    print(_document_line(row, files.get(row.external_id, []), percents))


def _document_line(
    row: SandboxRecord, files: list[SandboxAttachment], rates: Mapping[str, Decimal]
) -> str:
    """A sandbox document as `sandbox records` prints it: one JSON line, its current
    content (`content`, with `description`) at its `version`."""
    content = load_record(row.payload)
    first = content if isinstance(content, Expense) else content.lines[0]
    totals = money.totals(content, rates)
    shown = content.model_dump(mode="json", by_alias=True)
    return json.dumps(
        {
            "externalId": row.external_id,
            "idempotencyKey": row.idempotency_key,
            "recordType": row.record_type,
            "status": row.status,
            "version": row.version,
            "amount": row.amount,
            "currency": row.currency,
            "reference": row.reference,
            "description": first.description,
            "lines": [
                line.model_dump(mode="json", by_alias=True) for line in content.document_lines
            ],
            "lineAmountTypes": shown["lineAmountTypes"],
            "currencyRate": shown["currencyRate"],
            "paymentAccountId": shown.get("paymentAccountId"),
            "total": str(totals.total),
            "subTotal": str(totals.sub_total),
            "totalTax": str(totals.tax),
            "content": shown,
            "createdAt": row.created_at.isoformat(),
            "updatedAt": row.updated_at.isoformat(),
            "attachments": [
                {
                    "externalId": file.external_id,
                    "fileName": file.file_name,
                    "contentType": file.content_type,
                    "size": file.size,
                    "sha256": file.sha256,
                }
                for file in files
            ],
        }
    )


async def _sandbox_configure(args: argparse.Namespace, settings: Settings) -> None:
    names = (
        "rate_limit_per_minute",
        "max_concurrent",
        "documents_per_call",
        "transient_error_rate",
        "latency_ms",
    )
    changes = {
        name: value
        for name in (*names, "timeout_rate")
        if (value := getattr(args, name)) is not None
    }
    await migrate(settings.async_database_url)
    db = connect(settings.async_database_url)
    try:
        async with db.transaction() as session:
            if await session.get(Company, args.company_id) is None:
                raise SystemExit(f"company {args.company_id} not found")
            row = await sandbox.configure(session, company_id=args.company_id, **changes)
            if args.expire_token or args.expire_access_token:
                await sandbox.expire_access_token(session, company_id=args.company_id)
            if args.expire_token:
                await sandbox.revoke(session, company_id=args.company_id)
            print(row.model_dump_json())
    finally:
        await db.dispose()


async def _reseal_tokens(settings: Settings) -> None:
    vault = load_vault(settings)
    await migrate(settings.async_database_url)
    db = connect(settings.async_database_url)
    try:
        count = await reseal_tokens(db, vault)
    finally:
        await db.dispose()
    print(json.dumps({"resealedConnections": count}))


async def _replace_key(args: argparse.Namespace, settings: Settings, *, show: bool) -> None:
    """The old key stops working at once: API processes hear it on Redis when `REDIS_URL` is
    set, and check their open sockets' keys every `LIVE_CHECK_SECONDS` anyway."""
    await migrate(settings.async_database_url)
    db = connect(settings.async_database_url)
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    try:
        api_key = await replace_key(db, redis, company_id=args.company_id)
    except NotFound as exc:
        raise SystemExit(exc.message) from None
    finally:
        await db.dispose()
        if redis is not None:
            await redis.aclose()
    shown = {"apiKey": api_key} if show else {"revoked": True}
    print(json.dumps({"companyId": args.company_id, **shown}))


async def _history_sweep(settings: Settings) -> None:
    await migrate(settings.async_database_url)
    db = connect(settings.async_database_url)
    try:
        made, removed = await history.sweep(db, open_storage(settings), settings, utcnow())
    finally:
        await db.dispose()
    for name in made:
        print(json.dumps({"made": name}))
    for gone in removed:
        print(json.dumps({"removed": gone.table, "rows": gone.rows, "partition": gone.partition,
                          "archive": gone.archive}))  # fmt: skip


def _history_archives(settings: Settings) -> None:
    for name in history.archives(open_storage(settings)):
        print(name)


def _history_read(args: argparse.Namespace, settings: Settings) -> None:
    storage = open_storage(settings)
    if args.name not in history.archives(storage):
        raise SystemExit(f"sync2books: no archive {args.name} (see `sync2books history archives`)")
    for lines in history.archive_lines(storage, args.name):
        sys.stdout.buffer.write(lines)
