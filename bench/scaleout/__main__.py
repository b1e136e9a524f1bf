"""``python -m bench.scaleout``: see ``bench/scaleout/__init__.py``."""

from bench.scaleout.cli import main

raise SystemExit(main())
