"""The one settings object: every knob comes from the environment, nothing else reads it."""

from pathlib import Path
from typing import Literal

from pydantic import PositiveInt, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DATA_DIR = Path(".sync2books")  # the embedded default's one directory, in the working directory


def default_database_url(data_dir: Path) -> str:
    """The embedded default's SQLite file, in its data directory."""
    return f"sqlite+aiosqlite:///{data_dir / 'sync2books.db'}"


class Settings(BaseSettings):
    """Production sets `DATABASE_URL` and `REDIS_URL`; without them, the embedded default."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    database_url: str = ""  # unset: the SQLite file DATA_DIR/sync2books.db
    redis_url: str | None = None
    data_dir: Path = DATA_DIR  # everything the embedded default writes: see infra.data_dir
    secret_key: SecretStr | None = None  # Fernet keys sealing ledger tokens; see infra.vault
    graphiql: bool = True
    introspection: bool = True  # production may turn it off, with GraphiQL
    trusted_documents: Literal["off", "only"] = "off"  # only: run trusted documents alone
    trusted_documents_manifest: Path | None = None  # {"sha256 hash": "document"}: api.trusted
    api_rate_limit_per_minute: int = 1200  # requests per API key, across API processes
    max_body_bytes: int = 8 * 1024 * 1024  # 1,000 bills of 100 lines fit
    max_records_per_batch: int = 1000
    max_upload_bytes: int = 25 * 1024 * 1024  # one attachment; a ledger may allow less
    max_files_per_request: int = 20
    storage_url: str | None = None  # attachments: s3://bucket[/prefix]; else DATA_DIR/attachments
    storage_endpoint: str | None = None  # an S3-compatible server other than AWS's
    storage_region: str = "us-east-1"
    storage_access_key_id: str | None = None
    storage_secret_access_key: SecretStr | None = None
    download_url_seconds: int = 300  # how long an attachment's downloadUrl answers
    job_timeout_seconds: int = 120  # arq's limit for one run of a job (a slice takes seconds)
    lease_seconds: float = 8.0  # a job renews its batch's lease every quarter of this…
    sweep_seconds: int = 2  # …and a batch whose job died gets a new one this often (divides 60)
    job_slice_seconds: float = 5.0  # then a job queues the rest of its batch behind others
    worker_max_jobs: int = 10  # batches one worker process syncs at once
    worker_max_pushes: int = 20  # pushes one worker process has in flight, across its jobs
    recovery_seconds: int = (
        30  # how often workers queue unfinished batches with no job (divides 60)
    )
    event_retention_days: PositiveInt = 90  # the event log's history, then…
    push_attempt_retention_days: PositiveInt = 90  # …dropped a month at a time
    webhook_delivery_retention_days: PositiveInt = 90  # settled ones
    history_archive: bool = False  # write each month to the attachment store before its drop
    history_sweep_minutes: int = 10  # how often one worker keeps history (divides 60)
    max_push_attempts: int = 5  # pushes of one item before a transient failure is final
    retry_base_seconds: float = 0.5  # backoff before the 2nd push; doubles after, full jitter
    retry_max_seconds: float = 60.0
    sandbox_rate_limit_per_minute: int = 60  # the sandbox ledger's default limits, as Xero's
    sandbox_max_concurrent: int = 5
    sandbox_app_rate_limit_per_minute: int | None = None  # across companies, as Xero's app's
    sandbox_daily_limit: int | None = None  # calls a day per company, as Xero's 5,000
    sandbox_attachment_bytes: int = 10 * 1024 * 1024  # one attachment, as Xero's limit
    http_keep_alive_seconds: float = 75.0  # an idle HTTP connection stays open this long:
    # longer than clients and proxies keep theirs (60 s is usual), so none sends on one closing
    http_shutdown_grace_seconds: float = 10.0  # a stopped API ends what is still open after it
    ws_init_timeout_seconds: float = 10.0  # a WebSocket must send connection_init within this
    ws_keep_alive_seconds: float = 15.0  # server pings ("ka" on the legacy protocol)
    live_check_seconds: float = 1.0  # how often live feeds are checked against the event log
    alert_window_seconds: int = 300  # failure-rate alerts judge this sliding window
    alert_failure_rate: float = 0.5  # raised at or above this share of failed items…
    alert_min_items: int = 10  # …once the window holds this many outcomes
    webhook_retry_schedule: list[float] = [5, 300, 1800, 7200, 18000, 36000, 36000]  # seconds
    # between attempts after the first (immediate) one; then the delivery FAILED
    webhook_disable_after_seconds: float = 5 * 86400  # an endpoint failing this long is disabled
    webhook_timeout_seconds: float = 15.0
    webhook_allow_private_networks: bool = False  # endpoints on loopback/private addresses
    public_url: str | None = None  # where clients and browsers reach this service, when it is
    # not the address they used (a proxy that rewrites it): download links and the Link flow's
    # redirect URI, <public_url>/link/callback, registered with each ledger's app
    quickbooks_client_id: str | None = None
    quickbooks_client_secret: SecretStr | None = None
    quickbooks_auth_url: str = "https://appcenter.intuit.com/connect/oauth2"
    quickbooks_token_url: str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    quickbooks_api_url: str = "https://quickbooks.api.intuit.com"  # or sandbox-quickbooks.…
    xero_client_id: str | None = None
    xero_client_secret: SecretStr | None = None
    xero_auth_url: str = "https://login.xero.com/identity/connect/authorize"
    xero_token_url: str = "https://identity.xero.com/connect/token"
    xero_api_url: str = "https://api.xero.com"
    xero_rate_limit_per_minute: int = 60  # Xero's per-tenant limits; lower them to leave room
    xero_max_concurrent: int = 5  # for other apps of the same organisation
    quickbooks_rate_limit_per_minute: int = 500  # Intuit's per-realm limits
    quickbooks_max_concurrent: int = 10
    xero_app_rate_limit_per_minute: int = 10_000  # Xero's per-app limit, across organisations
    quickbooks_app_rate_limit_per_minute: int | None = None  # your Intuit tier's, if any
    worker_metrics_port: int | None = None  # a worker's own /metrics, for workers on hosts
    # with no API process (where one is, PROMETHEUS_MULTIPROC_DIR lets it report the host's)
    prometheus_multiproc_dir: Path | None = None  # shared by a host's processes: see metrics
    log_format: Literal["json", "text"] = "json"  # JSON lines; text for a terminal
    log_level: str = "INFO"
    # OpenTelemetry's own variables, as its SDK documents them (infra/tracing.py): the
    # exporter reads the rest (headers, timeouts, samplers) itself
    otel_sdk_disabled: bool = False
    otel_traces_exporter: str | None = None  # otlp, console or none
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None
    otel_service_name: str | None = None

    @model_validator(mode="after")
    def _embedded_database(self) -> "Settings":
        if not self.database_url:
            self.database_url = default_database_url(self.data_dir)
        return self

    @property
    def async_database_url(self) -> str:
        """The URL with an async driver, so plain `postgresql://` URLs work as given."""
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+asyncpg://" + url.removeprefix(prefix)
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
        return url

    @property
    def is_embedded_database(self) -> bool:
        """A SQLite file on this machine, rather than a database shared by several hosts."""
        return self.async_database_url.startswith("sqlite")

    @property
    def embedded_redis_dir(self) -> Path:
        """Where the self-started Redis keeps its data, log and socket when `REDIS_URL` is unset."""
        return self.data_dir / "redis"
