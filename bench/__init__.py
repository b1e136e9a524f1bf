"""Benchmarks and research tools; not installed, and no product module imports them (``python -m bench.<name>``)."""
