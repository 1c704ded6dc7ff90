"""Shared test helpers (importable as ``tests.support``); fixtures are in ``tests/conftest.py``."""
