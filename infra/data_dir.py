"""The embedded default's one directory (`DATA_DIR`, `./.sync2books/` unless set): its SQLite
file, secret key, attachments and Redis all live there, and a `.gitignore` of `*` inside keeps
the lot out of the user's commits.

Versions before it wrote `sync2books.db`, `.sync2books-secret.key`, `.sync2books-redis/` and
`attachments/` straight into the working directory; the first start after an upgrade moves
them in, so nothing is lost (the key above all: it opens the ledger tokens in that database).
"""

import contextlib
import logging
import shutil
from pathlib import Path

from infra.settings import DATA_DIR, Settings, default_database_url

log = logging.getLogger(__name__)

LEGACY_KEY = Path(".sync2books-secret.key")
LEGACY_DATABASE = ("sync2books.db", "sync2books.db-wal", "sync2books.db-shm")  # in the cwd
LEGACY_FILES = {  # in DATA_DIR, which was the working directory by default: where each goes
    LEGACY_KEY: Path("secret.key"),
    Path(".sync2books-redis/redis.db"): Path("redis/redis.db"),
    Path("attachments"): Path("attachments"),
}


def needed(settings: Settings) -> bool:
    """Whether anything of this process lives in the data directory."""
    return settings.is_embedded_database or not settings.redis_url or not settings.storage_url


def prepare(settings: Settings) -> None:
    """Make the directory with its `.gitignore`, and move an older version's files in."""
    root = settings.data_dir
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text(
            "# written by sync2books: its database, key and files, never committed\n*\n"
        )
    base = Path(".") if root == DATA_DIR else root
    if not (base / LEGACY_KEY).exists():
        return  # no older version's embedded default ran here
    moves = {base / old: root / new for old, new in LEGACY_FILES.items()}
    if settings.database_url == default_database_url(root):
        moves |= {Path(name): root / name for name in LEGACY_DATABASE}
    for old, new in moves.items():
        if old.exists() and old.resolve() != new.resolve() and not new.exists():
            new.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(old, new)
            log.warning("moved %s, written by an older version, to %s", old, new)
    with contextlib.suppress(OSError):  # only when emptied
        (base / ".sync2books-redis").rmdir()
