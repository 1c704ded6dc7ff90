"""Config of the OTLP/gRPC receiver (``receiver:``)."""

from __future__ import annotations

from pydantic import Field

from detector.config.types import Duration, StrictModel


class KeepaliveConfig(StrictModel):
    """gRPC server keepalive (grpc core channel args ``grpc.keepalive_*``)."""

    time: Duration = Field("2h", description="send a keepalive ping after this idle time")
    timeout: Duration = Field("20s", description="close the connection when a ping is not answered within this")
    min_client_ping_interval: Duration = Field("10s", description="clients pinging more often are told to back off")


class GrpcConfig(StrictModel):
    """The OTLP/gRPC endpoint."""

    endpoint: str = Field("0.0.0.0:4317", description="host:port to listen on")
    max_recv_msg_size_mib: float = Field(16, gt=0, description="largest accepted request, MiB, after decompression")
    max_concurrent_streams: int = Field(64, gt=0, description="HTTP/2 streams per connection")
    workers: int = Field(16, gt=0, description="handler threads (each decodes and enqueues one request)")
    keepalive: KeepaliveConfig = Field(default_factory=KeepaliveConfig)


class ReceiverConfig(StrictModel):
    """``receiver:`` section."""

    grpc: GrpcConfig = Field(default_factory=GrpcConfig)
