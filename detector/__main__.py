"""``python -m detector`` is the ``otel-anomaly`` command."""

from detector.cli import main

raise SystemExit(main())
