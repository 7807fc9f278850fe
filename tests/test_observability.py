"""/metrics reads the service's state from the database and Redis; logs never hold secrets."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from api.logs import REDACTED, configure_logging
from infra.settings import Settings
from models.company import NewCompany
from tests.conftest import Api, RunJobs
from tests.helpers import CREATE_EXPENSES, expense, metric_figures
from tests.processes import env_without_config


async def test_metrics_show_unfinished_work_and_its_age(
    api: Api, company: NewCompany, run_jobs: RunJobs
) -> None:
    variables = {"companyId": company.company.id, "expenses": [expense(), expense()]}
    await api.gql(CREATE_EXPENSES, variables)
    before = metric_figures((await api.http.get("/metrics")).text)
    assert before['sync2books_unfinished_batches{record_type="EXPENSE",status="PENDING"}'] == 1
    assert before['sync2books_unfinished_items{record_type="EXPENSE",status="PENDING"}'] == 2
    assert before["sync2books_queue_depth"] == 1
    assert before["sync2books_oldest_pending_seconds"] > 0

    await run_jobs()
    after = metric_figures((await api.http.get("/metrics")).text)
    assert 'sync2books_unfinished_batches{record_type="EXPENSE",status="PENDING"}' not in after
    assert after["sync2books_queue_depth"] == 0
    assert after["sync2books_oldest_pending_seconds"] == 0
    success = 'sync2books_items_total{record_type="EXPENSE",status="SUCCESS"}'
    assert after[success] - before.get(success, 0) == 2


def test_json_logs_carry_ids_and_blank_secrets(
    capsys: pytest.CaptureFixture[str], settings: Settings
) -> None:
    root = logging.getLogger()
    kept = root.handlers[:], root.level, sys.excepthook
    try:
        configure_logging(settings.model_copy(update={"log_format": "json"}))
        logging.getLogger("sync2books.test").warning(
            "item failed",
            extra={"batch_id": "bat_1", "access_token": "s3cret", "api_key": "k3y"},
        )
    finally:
        root.handlers[:], level, sys.excepthook = kept
        root.setLevel(level)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["message"] == "item failed" and line["level"] == "WARNING"
    assert line["batch_id"] == "bat_1"
    assert line["access_token"] == line["api_key"] == REDACTED


def test_a_process_that_crashes_says_so_in_one_json_line(tmp_path: Path) -> None:
    program = (
        "from api.logs import configure_logging\n"
        "from infra.settings import Settings\n"
        "configure_logging(Settings())\n"
        "raise RuntimeError('boom')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=env_without_config(LOG_FORMAT="json"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    (line,) = [json.loads(text) for text in done.stderr.splitlines()]
    assert line["level"] == "CRITICAL" and line["message"] == "uncaught RuntimeError"
    assert "RuntimeError: boom" in line["exc_info"]
