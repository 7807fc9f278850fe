"""A new user's first sync, timed: a fresh clone, the README's install and serve command,
then the README's First sync Python script (create two expenses, one failing; fix; retry) to
its second COMPLETED. The clone is of this checkout's committed HEAD."""

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.service import free_port, until_ready

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class FirstHour:
    clone_s: float
    install_s: float
    serve_s: float  # from `serve` to /readyz answering
    first_sync_s: float  # the README's script: both syncs, the fix and the retry
    total_s: float


def measure() -> FirstHour:
    with tempfile.TemporaryDirectory() as home:
        clone = Path(home) / "sync2books"
        port = free_port()
        started = time.monotonic()
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        cloned = time.monotonic()
        install = "python3 -m venv .venv && .venv/bin/pip install -q -e ."  # the README's
        subprocess.run(install, shell=True, cwd=clone, check=True, capture_output=True)
        installed = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        serve = [str(clone / ".venv/bin/sync2books"), "serve", "--port", str(port)]
        with subprocess.Popen(serve, cwd=clone, env=env, stderr=subprocess.DEVNULL) as server:
            try:
                if not asyncio.run(until_ready(f"http://127.0.0.1:{port}/readyz")):
                    sys.exit("the README's serve command never answered /readyz")
                served = time.monotonic()
                made = subprocess.run(
                    [".venv/bin/sync2books", "create-company", "--name", "Acme Ltd", "--shell"],
                    cwd=clone, env=env, check=True, capture_output=True, text=True,
                )  # fmt: skip
                company = dict(re.findall(r"export (\w+)=(\S+)", made.stdout))
                script = _first_sync_script((clone / "README.md").read_text())
                url = {"SYNC2BOOKS_URL": f"http://127.0.0.1:{port}"}
                done = subprocess.run(
                    [str(clone / ".venv/bin/python"), "-"], input=script, env=env | company | url,
                    capture_output=True, text=True,
                )  # fmt: skip
                assert done.returncode == 0, done.stderr
                assert done.stdout.splitlines()[-1] == "COMPLETED 2 synced, 0 failed", done.stdout
                synced = time.monotonic()
            finally:
                server.terminate()
    return FirstHour(
        clone_s=cloned - started,
        install_s=installed - cloned,
        serve_s=served - installed,
        first_sync_s=synced - served,
        total_s=synced - started,
    )


def _first_sync_script(readme: str) -> str:
    section = readme[readme.index("\n## First sync\n") :]
    script = re.search(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert script is not None, "the README's First sync has no Python block"
    return script.group(1)
