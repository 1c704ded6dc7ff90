"""Detector family ``auth``: odd authentication patterns in spans and logs (see :mod:`.detector`)."""
