"""Replay captured telemetry through the same pipeline in event time (reader: :mod:`detector.replay.reader`)."""
