"""`python -m pipeline` is the same as the `nightlights` command."""

from pipeline.cli import main

raise SystemExit(main())
