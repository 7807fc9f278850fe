"""The plumbing every process shares: settings (the one reader of the environment), the
database engine and its sessions, Redis clients and every Redis key (`infra.keys`), the job
queue, the pub/sub bus, object storage, the vault, metrics, tracing and backoff. It imports
none of the other rooms."""
