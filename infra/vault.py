"""The service's key: ledger tokens sealed at rest and download links signed, with Fernet
(AES-128-CBC with HMAC-SHA256) from `cryptography`.

The key comes from `SECRET_KEY`: one or more Fernet keys, comma-separated, the first sealing
and all of them opening, so a key is rotated by putting a new one first, running
`sync2books reseal-tokens`, then dropping the old one. The embedded default, whose database is a
local SQLite file, keeps its own key in its data directory (created once, readable by its owner
only); a shared database needs the key from configuration, the same in every process.
"""

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from infra.settings import Settings

KEY_FILE = "secret.key"  # in DATA_DIR (infra.data_dir)
UNOPENABLE = "a ledger token was sealed with a key that is not in SECRET_KEY (or was altered)"


class SecretKeyError(RuntimeError):
    """`SECRET_KEY` is missing where it is needed, malformed, or not the key that sealed."""


class Vault:
    def __init__(self, keys: list[bytes]) -> None:
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(UNOPENABLE) from None

    def sign(self, text: str) -> str:
        """A token of `text`: unreadable, unforgeable, stamped with when it was made."""
        return self._fernet.encrypt(text.encode()).decode()

    def verify(self, token: str, *, ttl_seconds: int) -> str | None:
        """The text of a token made within `ttl_seconds`, else None."""
        try:
            return self._fernet.decrypt(token.encode(), ttl=ttl_seconds).decode()
        except (InvalidToken, UnicodeError):
            return None

    def reseal(self, sealed: str) -> str:
        """The same secret sealed with the first key, so older keys can be retired."""
        try:
            return self._fernet.rotate(sealed.encode()).decode()
        except InvalidToken:
            raise SecretKeyError(UNOPENABLE) from None


def load_vault(settings: Settings) -> Vault:
    if settings.secret_key is not None:
        keys = [k.strip() for k in settings.secret_key.get_secret_value().split(",") if k.strip()]
        try:
            return Vault([key.encode() for key in keys])
        except ValueError as exc:
            raise SecretKeyError(
                "SECRET_KEY must be Fernet keys (32 url-safe base64 bytes), comma-separated; "
                "`sync2books generate-secret-key` makes one"
            ) from exc
    if not settings.is_embedded_database:
        raise SecretKeyError(
            "SECRET_KEY is not set: a shared database needs the same key in every process; "
            "`sync2books generate-secret-key` makes one"
        )
    return Vault([_own_key(settings.data_dir / KEY_FILE)])


def _own_key(path: Path) -> bytes:
    """The embedded default's key: read, or created once with owner-only permissions. It is
    written whole to a private file first and then linked into place, so a process starting
    alongside never reads half a key, and the first one to link wins."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"{path.name}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key() + b"\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_bytes().strip()
