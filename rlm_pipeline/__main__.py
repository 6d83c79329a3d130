"""``python -m rlm_pipeline`` runs the command line."""

from rlm_pipeline.cli.main import main

raise SystemExit(main())
