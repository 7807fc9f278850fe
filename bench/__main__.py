"""`python -m bench [pipeline] [tracing] [limited] [live] …` (all of them when none is named).

Starts the service as production runs it (PostgreSQL `BENCH_DATABASE_URL`, Redis
`BENCH_REDIS_URL`, one API process, worker processes), drives it through the public API
only, and prints a table of figures per scenario. Benchmarks print; they never fail a test run.
"""

import argparse
import asyncio
import platform
import resource
import statistics
from collections.abc import Callable

import uvloop

from bench import (
    changes,
    events,
    first_hour,
    footprint,
    live,
    noisy,
    otlp,
    pipeline,
    queries,
    soak,
    uploads,
)
from bench.service import running


def _tracing(args: argparse.Namespace) -> str:
    if not args.tracing:
        return ""
    return f"; tracing on, {args.tracing:.0%} of traces sampled and exported over OTLP"


def _rich(args: argparse.Namespace) -> str:
    return " of five lines, two tracking categories each, tax included" if args.rich else ""


def _made(args: argparse.Namespace) -> Callable[[int], pipeline.Record]:
    return pipeline.rich_expense if args.rich else pipeline.expense


LIVE_ROW = "{:>11} {:>7} {:>10} {:>8} {:>8} {:>8} {:>9}"


async def _live(args: argparse.Namespace) -> None:
    print(f"live: {args.rate:g} events/s for {args.seconds:g} s; one API process, one worker")
    print(LIVE_ROW.format("subscribers", "events", "deliveries", "p50 ms", "p99 ms", "max ms",
                          "pickup ms"))  # fmt: skip
    for count in args.subscribers:
        async with running() as service:
            f = await live.measure(service, subscribers=count, rate=args.rate, seconds=args.seconds)
        latency = (f"{ms:.1f}" for ms in (f.p50_ms, f.p99_ms, f.max_ms, f.pickup_p50_ms))
        print(LIVE_ROW.format(f.subscribers, f.events, f.deliveries, *latency))
    async with running() as service:
        p = await live.polling(service, rate=args.rate, seconds=args.seconds)
    print(f"instead, polling syncBatch every {live.POLL_SECONDS:g} s: {p.batches} batches, "
          f"COMPLETED seen {p.staleness_s:.2f} s late on average, "
          f"{p.requests_per_batch:.2f} requests per batch")  # fmt: skip


async def _pipeline(args: argparse.Namespace) -> None:
    print(f"pipeline: {args.items} items{_rich(args)}, {args.companies} companies, batches of "
          f"{args.batch}; sandbox unlimited, no latency; one API process, {args.workers} "
          f"worker(s){_tracing(args)}")  # fmt: skip
    f = await _throughput(args, args.tracing)
    print(f"{'items':>7} {'created s':>9} {'synced s':>9} {'items/s':>8}")
    print(f"{f.items:>7} {f.create_seconds:>9.2f} {f.total_seconds:>9.2f} "
          f"{f.items_per_second:>8.0f}")  # fmt: skip
    shares = ", ".join(f"{role} {ms:.2f}" for role, ms in sorted(f.cpu_ms_per_item.items()))
    print(f"CPU ms per item: {shares}; all {sum(f.cpu_ms_per_item.values()):.2f}")
    if args.tracing:
        _spans(f.items)


async def _throughput(args: argparse.Namespace, tracing: float) -> pipeline.Throughput:
    """One run of the pipeline scenario, on a service started for it."""
    async with running(workers=args.workers, tracing=tracing) as service:
        return await pipeline.throughput(
            service,
            companies=args.companies,
            items=args.items,
            batch_size=args.batch,
            made=_made(args),
        )


async def _tracing_cost(args: argparse.Namespace) -> None:
    """Runs of one setting differ by up to a third on a shared machine: pairs, medians."""
    share = args.tracing or 1.0
    print(f"tracing: the pipeline scenario ({args.items} items, {args.workers} worker(s)) in "
          f"{args.pairs} pairs of runs, tracing off then on with {share:.0%} of traces "
          "sampled; the service's CPU (API, workers, PostgreSQL, Redis) per item")  # fmt: skip
    print(f"{'pair':>4} {'off ms':>7} {'on ms':>7} {'on/off':>7} {'spans/item':>10}")
    off: list[float] = []
    on: list[float] = []
    for pair in range(1, args.pairs + 1):
        for sampled, runs in ((0.0, off), (share, on)):
            f = await _throughput(args, sampled)
            runs.append(sum(ms for role, ms in f.cpu_ms_per_item.items() if role != "driver"))
        spans = otlp.spans().total() / args.items
        print(f"{pair:>4} {off[-1]:>7.2f} {on[-1]:>7.2f} {on[-1] / off[-1]:>7.2f} {spans:>10.2f}")
    median_off, median_on = statistics.median(off), statistics.median(on)
    cost = median_on / median_off - 1
    ratios = statistics.median(b / a for a, b in zip(off, on, strict=True)) - 1
    print(f"median: off {median_off:.2f}, on {median_on:.2f} ms per item: tracing costs "
          f"{cost:+.1%} (median of the pairs' ratios {ratios:+.1%})")  # fmt: skip


def _spans(items: int) -> None:
    spans = otlp.spans()
    common = ", ".join(f"{name} {count:,}" for name, count in spans.most_common(6))
    print(f"spans exported: {spans.total():,} ({spans.total() / items:.2f} per item); {common}")


async def _limited(args: argparse.Namespace) -> None:
    per_minute, per_call = (60, 50) if args.xero else (args.per_minute, args.documents_per_call)
    items = 1000 if args.xero else args.limited_items
    print(f"limited: one company, sandbox {per_minute} calls/min, 5 at once, {per_call} "
          f"documents per call; {items} items in one batch")  # fmt: skip
    async with running() as service:
        f = await pipeline.limited(
            service, per_minute=per_minute, concurrent=5, documents_per_call=per_call, items=items
        )
    print(f"{'allowed docs/min':>16} {'achieved':>9} {'fraction':>8} {'calls':>6} {'429s':>5} "
          f"{'synced s':>9}")  # fmt: skip
    print(f"{f.allowed_per_minute:>16} {f.achieved_per_minute:>9.0f} {f.fraction:>8.3f} "
          f"{f.calls:>6} {f.rate_limited:>5} {f.seconds:>9.1f}")  # fmt: skip


async def _changes(args: argparse.Namespace) -> None:
    per_minute, per_call = 60, 50  # Xero's
    print(f"changes: {args.limited_items} records created, then updated, then voided, one "
          f"request and batch each; one company, sandbox {per_minute} calls/min, 5 at once, "
          f"{per_call} documents per call")  # fmt: skip
    async with running() as service:
        f = await changes.measure(
            service, records=args.limited_items, per_minute=per_minute, documents_per_call=per_call
        )
    print(f"{'phase':>6} {'records':>7} {'seconds':>8} {'records/s':>9} {'429s':>5}")
    for p in f.phases:
        print(f"{p.name:>6} {p.records:>7} {p.seconds:>8.1f} {p.per_second:>9.1f} "
              f"{p.rate_limited:>5}")  # fmt: skip
    print(
        f"sandbox documents: {f.documents}, of which {f.as_last_operation} are voided with "
        "their update's content"
    )


async def _creates(args: argparse.Namespace) -> None:
    print(f"creates: createExpenses with {args.records} records{_rich(args)}, {args.samples} "
          "requests one at a time, one API process")  # fmt: skip
    async with running(workers=0) as service:
        f = await pipeline.creates(
            service, records=args.records, samples=args.samples, made=_made(args)
        )
    ordered = sorted(f.samples)
    p50, p99 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)]
    print(f"{'records':>7} {'p50 ms':>7} {'p99 ms':>7}")
    print(f"{f.records:>7} {p50 * 1000:>7.0f} {p99 * 1000:>7.0f}")


async def _queries(args: argparse.Namespace) -> None:
    print(f"queries: {args.batches:,} batches of one company, a batch of {args.batch_items:,} "
          f"items; {args.samples} requests each, one at a time, pages of 100"
          f"{_tracing(args)}")  # fmt: skip
    async with running(tracing=args.tracing) as service:
        timings = await queries.measure(
            service,
            batches=args.batches,
            items=args.batch_items,
            dashboard_items=args.dashboard_items,
            samples=args.samples,
        )
    print(f"{'query':<40} {'p50 ms':>7} {'p99 ms':>7}")
    for t in timings:
        print(f"{t.name:<40} {t.p50_ms:>7.1f} {t.p99_ms:>7.1f}")


async def _footprint(args: argparse.Namespace) -> None:
    print(f"footprint: idle companySyncEvents subscriptions in one API process; fan-out CPU "
          f"at {args.fan_out_at:,} subscribers")  # fmt: skip
    async with running() as service:
        memory, fan_out = await footprint.measure(
            service, counts=args.idle, fan_out_at=args.fan_out_at, creates=50
        )
    print(f"{'subscribers':>11} {'API RSS MiB':>11} {'KiB each':>9}")
    for m in memory:
        print(f"{m.subscribers:>11,} {m.rss_mib:>11.0f} {m.kib_each:>9.1f}")
    print(f"fan-out: {fan_out.events} events to {fan_out.subscribers:,} subscribers, "
          f"{fan_out.deliveries:,} deliveries, {fan_out.cpu_us_per_delivery:.1f} µs of API CPU "
          "each")  # fmt: skip


async def _uploads(args: argparse.Namespace) -> None:
    print(f"uploads: {args.upload_clients} clients each send a {args.upload_mib} MiB file to "
          "attachFiles at once; one API process, storage in its DATA_DIR")  # fmt: skip
    async with running(workers=0) as service:
        f = await uploads.measure(service, clients=args.upload_clients, mib_each=args.upload_mib)
    print(f"{'clients':>7} {'MiB each':>8} {'seconds':>8} {'MiB/s':>7} {'API RSS before':>14} "
          f"{'API RSS peak':>12}")  # fmt: skip
    print(f"{f.clients:>7} {f.mib_each:>8} {f.seconds:>8.2f} {f.mib_per_second:>7.1f} "
          f"{f.rss_before_mib:>14.0f} {f.rss_peak_mib:>12.0f}")  # fmt: skip


async def _first_hour(_: argparse.Namespace) -> None:
    print("first-hour: a fresh clone of HEAD, the README's install and serve, then its First "
          "sync script to the second COMPLETED")  # fmt: skip
    f = await asyncio.to_thread(first_hour.measure)
    print(f"{'clone s':>8} {'install s':>9} {'serve s':>8} {'first sync s':>12} {'total s':>8}")
    print(f"{f.clone_s:>8.1f} {f.install_s:>9.1f} {f.serve_s:>8.1f} {f.first_sync_s:>12.1f} "
          f"{f.total_s:>8.1f}")  # fmt: skip


async def _events(args: argparse.Namespace) -> None:
    print(f"events: the log at {' and '.join(f'{n:,}' for n in args.event_counts)} events, "
          f"{events.EVENTS_PER_COMPANY:,} of each company over {events.MONTHS} months, monthly "
          "partitions; "
          f"{args.event_samples} samples per figure (p50)")  # fmt: skip
    print(f"{'events':>11} {'inserts/s':>9} {'replay ms':>9} {'stats ms':>8} {'drop ms':>8} "
          f"{'dropped rows':>12}")  # fmt: skip
    for count in args.event_counts:
        f = await events.measure(count, args.event_samples)
        print(f"{f.events:>11,} {f.inserts_per_s:>9,.0f} {f.replay_ms:>9.1f} {f.stats_ms:>8.1f} "
              f"{f.drop_ms:>8.0f} {f.dropped_rows:>12,}")  # fmt: skip


async def _noisy(args: argparse.Namespace) -> None:
    print(f"noisy: heavy companies with {args.heavy_items:,} expenses each, their sandboxes "
          f"paced like Xero ({noisy.PER_MINUTE} calls/min of {noisy.PER_CALL}, "
          f"{noisy.CONCURRENT} at once, {noisy.LATENCY_MS} ms a call), and a light one creating "
          f"one a second for {args.light_seconds} s to an idle sandbox; one API process, "
          f"{args.workers} workers")  # fmt: skip
    print(f"{'heavy':>5} {'light p50 s':>10} {'p99 s':>10} {'max s':>10} {'min share':>10} "
          f"{'med share':>10}")  # fmt: skip
    for heavy in args.heavy:
        async with running(workers=args.workers) as service:
            f = await noisy.measure(
                service, heavy=heavy, items=args.heavy_items, seconds=args.light_seconds
            )
        print(noisy.summary(f))


async def _soak(args: argparse.Namespace) -> None:
    print(f"soak: {args.clients} clients over {soak.COMPANIES} companies, each subscribed to its "
          f"company's events and creating {soak.PER_CREATE} expenses, listing its batches and "
          f"reading one, a second apart, for {args.minutes:g} min; sandbox unlimited; one API "
          f"process, {args.workers} workers")  # fmt: skip
    async with running(workers=args.workers) as service:
        f = await soak.measure(service, clients=args.clients, minutes=args.minutes)
    print("\n".join(soak.summary(f)))


SCENARIOS = {
    "pipeline": _pipeline,
    "tracing": _tracing_cost,
    "limited": _limited,
    "changes": _changes,
    "creates": _creates,
    "live": _live,
    "queries": _queries,
    "footprint": _footprint,
    "uploads": _uploads,
    "first-hour": _first_hour,
    "events": _events,
    "noisy": _noisy,
    "soak": _soak,
}


async def _run(args: argparse.Namespace) -> None:
    for name in args.scenario or SCENARIOS:
        await SCENARIOS[name](args)
        print()


def _counts(text: str) -> list[int]:
    return [int(n) for n in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(  # no `choices`: Python 3.11's argparse checks the empty default
        "scenario", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument("--items", type=int, default=10_000, help="pipeline: items in all")
    parser.add_argument("--companies", type=int, default=50, help="pipeline: spread over")
    parser.add_argument("--batch", type=int, default=100, help="pipeline: items per batch")
    parser.add_argument("--workers", type=int, default=2, help="pipeline: worker processes")
    parser.add_argument("--per-minute", type=int, default=120, help="limited: calls a minute")
    parser.add_argument("--documents-per-call", type=int, default=50, help="limited")
    parser.add_argument(
        "--xero", action="store_true", help="limited: Xero's 60 calls/min of 50, 1,000 items"
    )
    parser.add_argument("--limited-items", type=int, default=1000, help="limited: one batch")
    parser.add_argument("--records", type=int, default=1000, help="creates: per request")
    parser.add_argument(
        "--rich",
        action="store_true",
        help="creates, pipeline: expenses of five lines, two tracking categories each, "
        "tax included",
    )
    parser.add_argument("--batches", type=int, default=100_000, help="queries: of one company")
    parser.add_argument("--batch-items", type=int, default=10_000, help="queries: failedItems'")
    parser.add_argument(
        "--dashboard-items", type=int, default=10, help="queries: items of each dashboard batch"
    )
    parser.add_argument("--samples", type=int, default=200, help="queries: per figure")
    parser.add_argument("--idle", type=_counts, default=[1000, 10000], help="footprint")
    parser.add_argument("--fan-out-at", type=int, default=1000, help="footprint: subscribers")
    parser.add_argument("--subscribers", type=_counts, default=[1, 100, 1000])
    parser.add_argument("--upload-clients", type=int, default=20, help="uploads: at once")
    parser.add_argument("--upload-mib", type=int, default=20, help="uploads: each file's MiB")
    parser.add_argument(
        "--tracing",
        type=float,
        nargs="?",
        const=1.0,
        default=0.0,
        help="pipeline, queries: OpenTelemetry on (OTLP), sampling this share (default 1); "
        "tracing: the share sampled in its runs with tracing on",
    )
    parser.add_argument("--pairs", type=int, default=5, help="tracing: pairs of runs")
    parser.add_argument(
        "--event-counts", type=_counts, default=[100_000, 10_000_000], help="events: log sizes"
    )
    parser.add_argument("--event-samples", type=int, default=50, help="events: per figure")
    parser.add_argument("--heavy", type=_counts, default=[10, 20], help="noisy: heavy companies")
    parser.add_argument("--heavy-items", type=int, default=5_000, help="noisy: each one's")
    parser.add_argument("--light-seconds", type=int, default=60, help="noisy: the light one's")
    parser.add_argument("--clients", type=int, default=200, help="soak: at once")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak: how long")
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if unknown := set(args.scenario) - set(SCENARIOS):
        parser.error(f"unknown scenario: {', '.join(sorted(unknown))}")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # a socket per client
    print(f"machine: {platform.node()} {platform.machine()}, Python {platform.python_version()}")
    uvloop.run(_run(args))  # the driver's own overhead stays out of the figures


if __name__ == "__main__":
    main()
