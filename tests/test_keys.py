"""API keys: rotated and revoked from the command line; a replaced key stops working at once,
on open WebSockets too."""

import asyncio
import json
from pathlib import Path

import pytest

from infra.services import Services
from infra.settings import Settings
from models.company import NewCompany, replace_key
from tests.conftest import Api
from tests.live import GraphQLWebSocket
from tests.processes import cli, cli_result, env_without_config

ME = "query($c: ID!) { syncBatches(companyId: $c) { totalCount } }"


async def _status(api: Api, company: NewCompany, key: str) -> int:
    response = await api.http.post(
        "/graphql",
        json={"query": ME, "variables": {"c": company.company.id}},
        headers={"Authorization": f"Bearer {key}"},
    )
    return response.status_code


async def test_keys_are_rotated_and_revoked_from_the_command_line(
    tmp_path: Path, settings: Settings, api: Api, company: NewCompany
) -> None:
    env = env_without_config(DATABASE_URL=settings.database_url)
    company_id = company.company.id
    rotated = json.loads(cli("rotate-key", "--company-id", company_id, cwd=tmp_path, env=env))
    new_key = rotated["apiKey"]
    assert new_key.startswith("s2b_") and len(new_key) >= 43  # 256 random bits, base64url
    assert (await _status(api, company, company.api_key), await _status(api, company, new_key)) == (
        401,
        200,
    )
    revoked = json.loads(cli("revoke-key", "--company-id", company_id, cwd=tmp_path, env=env))
    assert revoked == {"companyId": company_id, "revoked": True}
    assert await _status(api, company, new_key) == 401
    unknown = await asyncio.to_thread(
        cli_result, "revoke-key", "--company-id", "cmp_nope", cwd=tmp_path, env=env
    )
    assert unknown.returncode != 0 and "not found" in unknown.stderr


async def test_a_replaced_key_stops_working_over_http_at_once(
    api: Api, company: NewCompany, services: Services
) -> None:
    assert await _status(api, company, company.api_key) == 200
    new_key = await replace_key(services.db, services.redis, company_id=company.company.id)
    assert await _status(api, company, company.api_key) == 401
    assert await _status(api, company, new_key) == 200


@pytest.mark.parametrize("announced", [True, False])
async def test_a_replaced_key_closes_its_open_websockets(
    company: NewCompany, services: Services, live_server: str, announced: bool
) -> None:
    async with GraphQLWebSocket.connect(live_server, company.api_key) as client:
        redis = services.redis if announced else None  # unannounced: the periodic check
        await replace_key(services.db, redis, company_id=company.company.id)
        await asyncio.wait_for(client.ws.wait_closed(), 5)
        assert (client.ws.close_code, client.ws.close_reason) == (4403, "API key revoked")
