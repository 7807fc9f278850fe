"""Node.js projects that tests run: installed from their lockfile once a session."""

import asyncio
import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_installed: set[Path] = set()


def npm_project(folder: Path) -> Path:
    """`folder` with its packages installed by `npm ci` from its lockfile (again only when the
    lockfile changed); skipped when Node.js is not installed."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("Node.js is not installed: its tests are not run")
    if folder not in _installed:
        with (folder / "package-lock.json").open() as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one `npm ci` at a time: pytest-xdist's workers
            lockfile = hashlib.sha256((folder / "package-lock.json").read_bytes()).hexdigest()
            marker = folder / "node_modules" / ".installed-from"
            if not marker.exists() or marker.read_text() != lockfile:
                installed = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund", "--silent"],
                    cwd=folder,
                    capture_output=True,
                    text=True,
                    timeout=600,
                )
                assert installed.returncode == 0, installed.stderr
                marker.write_text(lockfile)
        _installed.add(folder)
    return folder


async def node(folder: Path, *args: str, seconds: float = 120) -> str:
    """Run a command in the project (`node …`, or one of its `npx` tools) without holding
    the event loop, which may be serving the API it talks to; its output."""
    process = await asyncio.create_subprocess_exec(
        *args, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, (out + err).decode()
    return out.decode()
