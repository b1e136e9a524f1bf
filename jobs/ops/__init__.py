"""Operator tools: the metrics server, worker health, the ``headshot-status`` CLI, the embedded ``redis-server``."""
