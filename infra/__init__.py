"""The plumbing every process shares: settings, the database engine and its sessions, Redis,
the job queue, object storage, metrics and tracing. It imports none of the other rooms."""
