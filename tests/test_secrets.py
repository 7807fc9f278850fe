"""Ledger tokens sealed at rest: the key from configuration, or the embedded default's own file."""

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text, update
from sqlmodel import col

from infra.services import Services
from infra.settings import Settings
from infra.vault import KEY_FILE, SecretKeyError, Vault, load_vault
from models.company import NewCompany, connection_of
from models.connections import reseal_tokens
from models.sandbox import SandboxGrant
from models.secrets import open_tokens
from models.tables import utcnow
from tests.conftest import Api, RunJobs, sandbox_ledger
from tests.helpers import CREATE_EXPENSES, data, expense
from tests.processes import cli, cli_result, env_without_config

ATTEMPTS = """
query($id: ID!) {
  syncBatch(id: $id) { items { edges { node { status pushAttempts { error { code } } } } } }
}
"""
POSTGRES = "postgresql://postgres@127.0.0.1:5432/sync2books"


async def test_tokens_are_stored_sealed_and_open_only_with_the_key(
    company: NewCompany, services: Services
) -> None:
    connection = await connection_of(services.db, company_id=company.company.id)
    tokens = open_tokens(services.vault, connection)
    assert tokens is not None and len(tokens.access_token) >= 40
    assert tokens.access_token not in repr(tokens) and tokens.refresh_token not in repr(tokens)
    async with services.db.sessions() as session:
        stored = " ".join(
            str(value) for value in (await session.execute(text("SELECT * FROM connection"))).one()
        )
    assert tokens.access_token not in stored and tokens.refresh_token not in stored

    stranger = Vault([Fernet.generate_key()])
    with pytest.raises(SecretKeyError, match="not in SECRET_KEY"):
        open_tokens(stranger, connection)


async def test_a_rotated_key_opens_old_tokens_until_they_are_resealed(
    company: NewCompany, services: Services, settings: Settings
) -> None:
    assert settings.secret_key is not None
    old = settings.secret_key.get_secret_value()
    new = Fernet.generate_key().decode()
    both = load_vault(settings.model_copy(update={"secret_key": SecretStr(f"{new},{old}")}))
    new_only = load_vault(settings.model_copy(update={"secret_key": SecretStr(new)}))
    connection = await connection_of(services.db, company_id=company.company.id)
    assert open_tokens(both, connection) == open_tokens(services.vault, connection)

    assert await reseal_tokens(services.db, both) == 1
    resealed = await connection_of(services.db, company_id=company.company.id)
    assert open_tokens(new_only, resealed) == open_tokens(services.vault, connection)
    with pytest.raises(SecretKeyError):
        open_tokens(services.vault, resealed)  # the old key alone no longer opens them


def test_the_embedded_default_keeps_its_own_key_file(tmp_path: Path) -> None:
    embedded = Settings(data_dir=tmp_path, database_url="sqlite:///x.db", secret_key=None)
    first, again = load_vault(embedded), load_vault(embedded)
    assert again.open(first.seal("token")) == "token"
    mode = stat.S_IMODE(os.stat(tmp_path / KEY_FILE).st_mode)
    assert mode == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no draft left behind


@pytest.mark.parametrize(
    ("secret_key", "message"),
    [(None, "SECRET_KEY is not set"), ("not-a-key", "must be Fernet keys"), (",", "Fernet")],
)
def test_a_shared_database_needs_a_well_formed_secret_key(
    secret_key: str | None, message: str, tmp_path: Path
) -> None:
    shared = Settings(data_dir=tmp_path, database_url=POSTGRES, secret_key=secret_key)
    with pytest.raises(SecretKeyError, match=message):
        load_vault(shared)
    assert not (tmp_path / KEY_FILE).exists()


def test_the_cli_makes_keys_and_refuses_to_start_without_one(tmp_path: Path) -> None:
    key = cli("generate-secret-key", cwd=tmp_path, env=env_without_config()).strip()
    assert Vault([key.encode()]).open(Vault([key.encode()]).seal("x")) == "x"

    created = cli("create-company", "--name", "Local", cwd=tmp_path, env=env_without_config())
    assert "apiKey" in created
    assert stat.S_IMODE(os.stat(tmp_path / ".sync2books" / KEY_FILE).st_mode) == 0o600

    env = env_without_config() | {"DATABASE_URL": POSTGRES}  # no SECRET_KEY
    commands = (("create-company", "--name", "X"), ("worker",), ("serve",))
    with ThreadPoolExecutor(len(commands)) as pool:  # at once: each is a Python start-up
        refusals = pool.map(lambda command: cli_result(*command, cwd=tmp_path, env=env), commands)
        for command, refused in zip(commands, refusals, strict=True):
            assert refused.returncode == 1, command
            assert "SECRET_KEY is not set" in refused.stderr and "Traceback" not in refused.stderr


async def test_an_access_token_the_ledger_refuses_early_is_refreshed_once_and_pushes_repeated(
    api: Api, company: NewCompany, services: Services, run_jobs: RunJobs
) -> None:
    """Our copy still looks valid, but the ledger ended it (as QuickBooks' 401 after a
    password change): the job's pushes, running at once, refresh it once and push again."""
    async with services.db.transaction() as session:
        await session.execute(
            update(SandboxGrant)
            .where(col(SandboxGrant.company_id) == company.company.id)
            .values(access_expires_at=utcnow())
        )
    variables = {"companyId": company.company.id, "expenses": [expense()] * 6}
    batch_id = data(await api.gql(CREATE_EXPENSES, variables))["createExpenses"]["syncBatchId"]
    await run_jobs()
    batch = data(await api.gql(ATTEMPTS, {"id": batch_id}))["syncBatch"]
    items = [edge["node"] for edge in batch["items"]["edges"]]
    assert {item["status"] for item in items} == {"SUCCESS"}
    codes = [[a["error"] and a["error"]["code"] for a in i["pushAttempts"]] for i in items]
    assert ["CONNECTION_EXPIRED", None] in codes
    assert all(c in (["CONNECTION_EXPIRED", None], [None]) for c in codes), codes
    assert await (await sandbox_ledger(services, company)).refreshes() == 1
