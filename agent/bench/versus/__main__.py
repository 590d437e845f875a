"""``python -m agent.bench.versus``: see :mod:`agent.bench.versus`."""

from agent.bench.versus.cli import main

raise SystemExit(main())
