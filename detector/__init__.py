"""otel-anomaly: anomaly detection at the end of an OpenTelemetry pipeline.

Data flows one way through the sub-packages, each one stage:

``receive``   OTLP/gRPC server (validation, auth, backpressure)
``normalise`` decode OTLP requests into compact records in one pass
``pipeline``  bounded queue, event-time windows, watermark, the analysis worker
``detectors`` one module per detector family (error_rate, schema_drift, auth)
``alerts``    alert lifecycle: open / resolve / dedup / correlate
``expose``    Prometheus metrics, JSON API, health endpoints
``replay``    captured telemetry fed through the same pipeline in event time
``state``     checkpointing of all learned state
``sim``/``eval`` simulator, incident catalogue and evaluation harness
"""

__version__ = "0.1.0"
