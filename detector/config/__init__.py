"""Config loading: shared types (:mod:`.types`), the root model (:mod:`.root`),
YAML loading with line numbers (:mod:`.loader`). Each section's model lives
next to the code it configures (e.g. ``detector/receive/config.py``)."""
