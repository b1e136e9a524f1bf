"""Log lines: JSON objects with the task's tags; secrets masked even in lines third-party libraries write."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from jobs.logging_setup import configure_logging, log_context
from jobs.ops.metrics import MetricsServer
from jobs.settings import Settings
from tests.operations import captured_logs

TOKEN = "123456:SECRET-telegram-token"


async def test_json_lines_carry_tags_and_never_the_token(settings: Settings, unused_tcp_port: int) -> None:
    settings = settings.model_copy(
        update={"log_format": "json", "telegram_token": SecretStr(TOKEN), "redis_url": "redis://:hunter2@redis:6379/0"}
    )
    server = MetricsServer(CollectorRegistry(), "127.0.0.1", unused_tcp_port, owner="test")
    await server.start()
    # The Telegram adapter quiets httpx to WARNING when it starts (an earlier test may have); this test needs its lines.
    httpx_logger = logging.getLogger("httpx")
    httpx_level = httpx_logger.level
    httpx_logger.setLevel(logging.INFO)
    try:
        with captured_logs(settings) as logs:
            async with log_context(user_key="telegram:42"), httpx.AsyncClient() as http:
                # httpx logs each request's URL at INFO; a Telegram URL carries the bot token.
                await http.get(f"http://127.0.0.1:{unused_tcp_port}/bot{TOKEN}/getMe")
                with log_context(job_id="train:telegram:42:1:0"):
                    logging.getLogger("bot.test").warning("connecting to redis://:hunter2@redis:6379/0")
            logging.getLogger("bot.test").info("after the block")
    finally:
        httpx_logger.setLevel(httpx_level)
        await server.stop()
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    request = next(line for line in lines if line["logger"] == "httpx")
    assert request["user_key"] == "telegram:42" and "job_id" not in request
    assert "/bot**********/getMe" in request["message"]
    tagged = next(line for line in lines if line["logger"] == "bot.test" and line["level"] == "WARNING")
    assert tagged["job_id"] == "train:telegram:42:1:0" and tagged["user_key"] == "telegram:42"
    assert tagged["message"] == "connecting to redis://:**********@redis:6379/0"
    after = next(line for line in lines if line["message"] == "after the block")
    assert "user_key" not in after and "job_id" not in after
    assert TOKEN not in logs.getvalue() and "hunter2" not in logs.getvalue()


def test_text_lines_show_tags_and_a_bad_level_is_named(settings: Settings) -> None:
    with captured_logs(settings) as logs, log_context(job_id="generate:local:ann:r1"):
        logging.getLogger("jobs.worker.app").info("rendering")
    assert logs.getvalue().rstrip().endswith("INFO jobs.worker.app [job_id=generate:local:ann:r1]: rendering")
    with pytest.raises(ValueError, match="HEADSHOT_LOG_LEVEL='LOUD' is not a logging level"):
        configure_logging(settings.model_copy(update={"log_level": "LOUD"}))


def test_log_format_setting_is_checked() -> None:
    assert Settings(_env_file=None, log_format="json").log_format == "json"  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="log_format"):
        Settings(_env_file=None, log_format="xml")  # type: ignore[call-arg]
