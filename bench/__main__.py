"""`python -m bench [live] [--subscribers 1,100,1000] [--rate 25] [--seconds 20]`.

Starts the service as production runs it (PostgreSQL `BENCH_DATABASE_URL`, Redis
`BENCH_REDIS_URL`, one API process, one worker process), drives it through the public API
only, and prints a table of figures. Benchmarks print; they never fail a test run.
"""

import argparse
import platform
import resource

import uvloop

from bench import live
from bench.service import running

ROW = "{:>11} {:>7} {:>10} {:>8} {:>8} {:>8}"


async def _live(args: argparse.Namespace) -> None:
    print(f"live: {args.rate:g} events/s for {args.seconds:g} s; one API process, one worker")
    print(ROW.format("subscribers", "events", "deliveries", "p50 ms", "p99 ms", "max ms"))
    for count in args.subscribers:
        async with running() as service:
            f = await live.measure(service, subscribers=count, rate=args.rate, seconds=args.seconds)
        latency = (f"{ms:.1f}" for ms in (f.p50_ms, f.p99_ms, f.max_ms))
        print(ROW.format(f.subscribers, f.events, f.deliveries, *latency))


def _counts(text: str) -> list[int]:
    return [int(n) for n in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", nargs="*", default=["live"], choices=["live"])
    parser.add_argument("--subscribers", type=_counts, default=[1, 100, 1000])
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # a socket per client
    print(f"machine: {platform.node()} {platform.machine()}, Python {platform.python_version()}")
    uvloop.run(_live(args))  # the driver's own overhead stays out of the figures


if __name__ == "__main__":
    main()
