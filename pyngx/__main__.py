"""``python -m pyngx`` runs the command line, as the ``pyngx`` script does."""

from pyngx.cli import main

raise SystemExit(main())
