"""Fuzz target: a real running OTLP/gRPC :class:`~detector.receive.server.Receiver`.

Every input is one Export call over a real grpcio channel to the receiver on
``127.0.0.1:<free port>`` with bearer auth configured. Byte 0 of the input
selects the method (trace / logs / metrics / an unknown one), the credentials
(right token, wrong token, none, odd casing/whitespace) and gzip; the rest is
the request body (mutated OTLP protobuf).

Documented outcomes: the status codes of the contract — OK, INVALID_ARGUMENT,
RESOURCE_EXHAUSTED (the sink refuses ~10 % of batches to exercise the retry
path), UNAUTHENTICATED, and UNIMPLEMENTED for the unknown method. A crash is
UNKNOWN/INTERNAL (the handler raised), DEADLINE_EXCEEDED (a hang), anything
submitted to the sink without valid credentials, or the receiver no longer
answering a valid request afterwards.
"""

from __future__ import annotations

import random
import threading

import grpc

from tests.fuzz import seeds
from tests.fuzz.targets import InvariantError, Target, mutate_request

TOKEN = "fuzz-token-0123456789"
METHODS = [
    ("traces", "/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
    ("logs", "/opentelemetry.proto.collector.logs.v1.LogsService/Export"),
    ("metrics", "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"),
    ("traces", "/opentelemetry.proto.collector.trace.v1.TraceService/Nope"),
]
AUTH = [
    [("authorization", f"Bearer {TOKEN}")],
    [("authorization", f"bearer   {TOKEN}  ")],
    [("authorization", "Bearer wrong")],
    [],
    [("authorization", f"Basic {TOKEN}")],
    [("authorization", "Bearer " + TOKEN[:-1])],
]
AUTH_OK = {0, 1}



class _Sink:
    """A non-blocking sink that refuses ~10 % of batches and counts what it accepted."""

    def __init__(self) -> None:
        self.accepting = True
        self.items = 0
        self.batches = 0
        self.refuse = False
        self._lock = threading.Lock()

    def submit(self, batch) -> bool:
        with self._lock:
            if self.refuse:
                return False
            self.items += batch.items
            self.batches += 1
            return True


class ReceiverTarget(Target):
    """Export calls with mutated bodies and random credentials to a live Receiver."""

    name = "receiver"
    documented: tuple = ()  # outcomes are gRPC status codes, checked in execute()

    def __init__(self) -> None:
        from detector.receive.server import Receiver  # noqa: F401  (ImportError = target absent)

        self.documented = ()
        self._receiver = None
        self._channel = None

    def setup(self) -> None:
        import os
        import tempfile

        from prometheus_client import CollectorRegistry

        from detector.expose.metrics import SelfMetrics
        from detector.receive.config import ReceiverConfig
        from detector.receive.server import Receiver

        self._tmp = tempfile.TemporaryDirectory(prefix="otelanom-fuzz-recv-")
        token_file = os.path.join(self._tmp.name, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        cfg = ReceiverConfig.model_validate(
            {"grpc": {"endpoint": "127.0.0.1:0", "workers": 4, "max_recv_msg_size_mib": 4, "auth": {"bearer_token_file": token_file}}}
        )
        self.sink = _Sink()
        self.metrics = SelfMetrics(CollectorRegistry())
        self._receiver = Receiver(cfg, self.sink, self.metrics)
        port = self._receiver.start()
        self._channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
        self._calls = {m: self._channel.unary_unary(m, request_serializer=None, response_deserializer=None) for _, m in METHODS}
        self._rng = random.Random(0)

    def teardown(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._receiver is not None:
            self._receiver.stop(1.0)
            self._receiver = None
        tmp = getattr(self, "_tmp", None)
        if tmp is not None:
            tmp.cleanup()
            self._tmp = None

    def seeds(self) -> list[bytes]:
        out = []
        for i, signal in enumerate(("traces", "logs", "metrics")):
            for body in seeds.binary_seeds(signal, 2):
                out.append(bytes([i]) + body)
        return out

    def mutate(self, rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
        head = data[0] if data else 0
        body = data[1:]
        signal = METHODS[head % len(METHODS)][0]
        if rng.random() < 0.3:
            head = rng.randrange(256)
        if rng.random() < 0.8:
            body = mutate_request(rng, signal, body, [c[1:] for c in corpus[:50]])
        return bytes([head]) + body

    def execute(self, data: bytes) -> str:
        if self._receiver is None:
            self.setup()
        self._n = getattr(self, "_n", 0) + 1
        if self._n % 200 == 0:
            self._still_serving()
        head = data[0] if data else 0
        body = data[1:]
        signal, method = METHODS[head % len(METHODS)]
        auth_i = (head // len(METHODS)) % len(AUTH)
        gzip = bool(head & 0x80)
        self.sink.refuse = (head % 10) == 9
        before = self.sink.items
        try:
            self._calls[method](
                body,
                timeout=10.0,
                metadata=AUTH[auth_i],
                compression=grpc.Compression.Gzip if gzip else grpc.Compression.NoCompression,
            )
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
            details = exc.details()
        else:
            details = ""
        finally:
            self.sink.refuse = False
        if method.endswith("/Nope"):
            allowed = {grpc.StatusCode.UNIMPLEMENTED}
        elif auth_i not in AUTH_OK:
            allowed = {grpc.StatusCode.UNAUTHENTICATED}
        else:
            allowed = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
            if len(body) > 4 * 1024 * 1024:
                allowed.add(grpc.StatusCode.RESOURCE_EXHAUSTED)
        if code not in allowed:
            raise InvariantError(f"{method} auth#{auth_i} gzip={gzip}: status {code.name} ({details!r:.200}), expected one of {sorted(c.name for c in allowed)}")
        if auth_i not in AUTH_OK and self.sink.items != before:
            raise InvariantError("items reached the pipeline without valid credentials")
        received = sum(
            self.metrics.registry.get_sample_value("otel_anomaly_received_items_total", {"signal": s}) or 0.0
            for s in ("spans", "log_records")
        )
        if received != self.sink.items:
            raise InvariantError(f"received_items_total {received} != items accepted by the sink {self.sink.items}")
        return f"{code.name}:{auth_i in AUTH_OK}"

    def _still_serving(self) -> None:
        body = seeds.binary_seeds("traces", 1)[0]
        try:
            self._calls[METHODS[0][1]](body, timeout=10.0, metadata=AUTH[0])
        except grpc.RpcError as exc:
            raise InvariantError(f"receiver no longer serves a valid request: {exc.code().name} {exc.details()!r:.200}") from None
