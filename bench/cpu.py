"""CPU time spent by each part of the running service, read from /proc, so a figure can say
where an item's cost goes: the API, the workers, PostgreSQL, Redis and the driver itself."""

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _role(pid: int) -> str | None:
    """Which part of the service a process is, or None for the rest of the machine."""
    if pid == os.getpid():
        return "driver"
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    if args[0].startswith(b"postgres:") or args[0].endswith(b"/postgres"):  # backends, server
        return "postgres"
    if args[0].startswith(b"redis-server"):
        return "redis"
    if len(args) > 2 and args[1].endswith(b"/sync2books"):  # python …/bin/sync2books COMMAND
        return {b"serve": "api", b"worker": "workers"}.get(args[2])
    return None


def snapshot() -> dict[int, tuple[str, float]]:
    """Each service process's role and CPU seconds (user + system) so far."""
    seen: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (role := _role(int(entry.name))) is None:
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended
        seen[int(entry.name)] = (role, (int(fields[11]) + int(fields[12])) / TICK)
    return seen


def spent(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds by role between two snapshots (a process born in between counts in full)."""
    used: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        earlier = before.get(pid)
        start = earlier[1] if earlier and earlier[0] == role else 0.0
        used[role] = used.get(role, 0.0) + seconds - start
    return used
