"""Operations test helpers: scrape a metrics endpoint over HTTP; capture log lines as an entry point writes them."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from jobs.logging_setup import build_log_handler
from jobs.settings import Settings


@contextmanager
def captured_logs(settings: Settings) -> Iterator[io.StringIO]:
    """The process's log lines, as ``headshot-worker`` would write them with these settings."""
    buffer = io.StringIO()
    handler = build_log_handler(settings, buffer)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` as {(name, sorted labels): value}, read over real HTTP."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
