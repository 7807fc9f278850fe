"""Every Redis key and pub/sub channel of ours, in one place and each under `sync2books:`, so
that an operator sharing a Redis sees at once which keys are the service's (arq keeps its own
names in `arq.constants`; its jobs' keys are under arq's prefixes)."""

PREFIX = "sync2books:"

QUEUE = PREFIX + "queue"  # arq's queue: a sorted set of the job ids waiting to start
LEASE_DEADLINES = PREFIX + "leases"  # batch id → when its lease lapses (ms, Redis's clock)
LEASE_HOLDERS = PREFIX + "lease-holders"  # batch id → the arq job id holding it
KEYS_CHANNEL = PREFIX + "keys"  # API processes hear of replaced API keys here
ALERTS_CHANNELS = PREFIX + "alerts:"  # then the company id


def events_channel(company_id: str) -> str:
    """Where a company's committed transitions are announced."""
    return f"{PREFIX}events:{company_id}"


def alerts_channel(company_id: str) -> str:
    """Where a company's alerts are announced."""
    return ALERTS_CHANNELS + company_id


def outcomes(company_id: str, minute: int) -> str:
    """A company's item outcomes in one minute, for its failure-rate alert."""
    return f"{PREFIX}outcomes:{company_id}:{minute}"


def requests(key_hash: str, minute: int) -> str:
    """An API key's requests in one minute, for its rate limit."""
    return f"{PREFIX}requests:{key_hash}:{minute}"


def link_state(state: str) -> str:
    """A Link flow under way: its company, provider and PKCE verifier."""
    return f"{PREFIX}link:{state}"


def refresh_lock(connection_id: str) -> str:
    """Held by the one process refreshing a connection's tokens."""
    return f"{PREFIX}refresh:{connection_id}"


def first_turns(company_id: str, minute: int) -> str:
    """A company's batches queued as first turns in one minute (`infra.queue.enqueue_sync`)."""
    return f"{PREFIX}first-turns:{company_id}:{minute}"


def reserved_slot(batch_id: str) -> str:
    """When the ledger call slot a batch's job reserved before queueing itself is due."""
    return f"{PREFIX}reserved:{batch_id}"


def app_limit(provider: str) -> str:
    """Our app's calls to one provider in each minute, across every connection."""
    return f"{PREFIX}app-limit:{provider}"


def limit(connection_id: str, part: str) -> str:
    """The gateway's limiter for a connection: `slots`, `calls`, `minute` or `day`."""
    return f"{PREFIX}limit:{connection_id}:{part}"


def chart(connection_id: str) -> str:
    """A connection's cached chart: accounts, tax rates with their percentages, tracking
    (v2: v1 held the tax rates' codes only)."""
    return f"{PREFIX}chart:v2:{connection_id}"


def ledger(provider: str, tenant_id: str, part: str) -> str:
    """What we keep of a ledger's organisation: remembered ids, the calls it says are left."""
    return f"{PREFIX}{provider}:{tenant_id}:{part}"


def sandbox(company_id: str, part: str) -> str:
    """The sandbox ledger's own counters for a company (its limits, its refreshes)."""
    return f"{PREFIX}sandbox:{company_id}:{part}"
