"""`python -m tinytl` entry point."""

from tinytl.cli import main

raise SystemExit(main())
