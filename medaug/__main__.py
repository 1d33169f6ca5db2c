"""``python -m medaug`` runs the command-line interface."""

from medaug.cli import main

raise SystemExit(main())
